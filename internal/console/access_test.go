package console_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/test/framework/testenv"
)

// serviceAccountToken creates a ServiceAccount in ns that may do rules there (none: nothing) and returns a
// token the API server issued for it.
func serviceAccountToken(t *testing.T, ns, name string, rules ...rbacv1.PolicyRule) string {
	t.Helper()
	g := NewWithT(t)
	ctx := context.Background()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	g.Expect(env.Client.Create(ctx, sa)).To(Succeed())
	if len(rules) > 0 {
		g.Expect(env.Client.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Rules: rules})).To(Succeed())
		g.Expect(env.Client.Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}},
		})).To(Succeed())
	}
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}
	g.Expect(env.Client.SubResource("token").Create(ctx, sa, tr)).To(Succeed())
	g.Expect(tr.Status.Token).NotTo(BeEmpty())
	return tr.Status.Token
}

var (
	getCollectors = rbacv1.PolicyRule{APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"managedcollectors"}, Verbs: []string{"get", "list"}}
	listTokens    = rbacv1.PolicyRule{APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"enrollmenttokens"}, Verbs: []string{"list"}}
	listEvents    = rbacv1.PolicyRule{APIGroups: []string{"events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"list"}}
)

// TestExposedNeedsAToken: with a token required, a request without one, or with one the API server does not
// know, gets 401 and no page; the token's user is named in the header.
func TestExposedNeedsAToken(t *testing.T) {
	g := NewWithT(t)
	s := startOperator(t, true)
	ns := testenv.Namespace(t, env.Client, "exposed")
	collector(t, s, ns, "edge", "web-01")
	for name, token := range map[string]string{"no token": "", "an unknown token": "not-a-kubernetes-token"} {
		for _, path := range []string{"/", "/collectors/" + ns + "/edge", "/collectors/" + ns + "/edge/topology", "/updates", "/static/console.css"} {
			code, body := get(t, s.console+path, token)
			if code != http.StatusUnauthorized {
				t.Errorf("%s, %s: status %d, want 401", name, path, code)
			}
			if strings.Contains(body, "edge") || strings.Contains(body, ns) {
				t.Errorf("%s, %s: the 401 shows the fleet: %q", name, path, body)
			}
		}
	}
	token := serviceAccountToken(t, ns, "viewer", getCollectors)
	g.Eventually(func(g Gomega) {
		code, body := get(t, s.console+"/collectors/"+ns+"/edge", token)
		g.Expect(code).To(Equal(http.StatusOK))
		g.Expect(body).To(ContainSubstring("system:serviceaccount:" + ns + ":viewer"))
		g.Expect(body).To(ContainSubstring("web-01"))
		g.Expect(body).NotTo(ContainSubstring(token))
	}, timeout, interval).Should(Succeed())
}

// TestViewersSeeWhatRBACAllows: a user allowed to get ManagedCollectors in one namespace sees that
// namespace's and nothing of another's: not in the list, not in the namespace filter, and its pages answer 403
// whether the ManagedCollector exists or not. Without list on EnrollmentTokens and Events, those sections say
// so and show nothing.
func TestViewersSeeWhatRBACAllows(t *testing.T) {
	g := NewWithT(t)
	s := startOperator(t, true)
	mine := testenv.Namespace(t, env.Client, "mine")
	theirs := testenv.Namespace(t, env.Client, "theirs")
	collector(t, s, mine, "mine-collector", "host-mine")
	collector(t, s, theirs, "their-collector", "host-theirs")
	onlyCollectors := serviceAccountToken(t, mine, "reader", getCollectors)
	everything := serviceAccountToken(t, mine, "admin", getCollectors, listTokens, listEvents)

	g.Eventually(func(g Gomega) {
		code, body := get(t, s.console+"/", onlyCollectors)
		g.Expect(code).To(Equal(http.StatusOK))
		g.Expect(body).To(ContainSubstring("mine-collector"))
		g.Expect(body).NotTo(ContainSubstring(theirs))
		g.Expect(body).NotTo(ContainSubstring("their-collector"))
	}, timeout, interval).Should(Succeed())
	for _, path := range []string{"/?namespace=" + theirs, "/collectors/" + theirs + "/their-collector", "/collectors/" + theirs + "/their-collector/topology", "/collectors/" + theirs + "/absent"} {
		code, body := get(t, s.console+path, onlyCollectors)
		if strings.Contains(body, "their-collector") || strings.Contains(body, "host-theirs") {
			t.Errorf("%s shows the other namespace's collector: %d %q", path, code, body)
		}
		if path != "/?namespace="+theirs && code != http.StatusForbidden {
			t.Errorf("%s: status %d, want 403", path, code)
		}
	}
	code, _ := get(t, s.console+"/updates?namespace="+theirs, onlyCollectors)
	g.Expect(code).To(Equal(http.StatusForbidden))

	code, body := get(t, s.console+"/collectors/"+mine+"/mine-collector", onlyCollectors)
	g.Expect(code).To(Equal(http.StatusOK))
	g.Expect(body).To(ContainSubstring("You may not list events in namespace " + mine))
	g.Expect(body).To(ContainSubstring("You may not list EnrollmentTokens in namespace " + mine))
	g.Expect(body).NotTo(ContainSubstring("Registered"))
	g.Eventually(func(g Gomega) {
		_, body := get(t, s.console+"/collectors/"+mine+"/mine-collector", everything)
		g.Expect(body).To(ContainSubstring("Registered"))
		g.Expect(body).To(ContainSubstring("No EnrollmentTokens for this ManagedCollector"))
	}, timeout, interval).Should(Succeed())
}
