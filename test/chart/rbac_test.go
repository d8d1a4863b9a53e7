package chart_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
	"github.com/linkmesh/linkmesh-operator/internal/operator"
	"github.com/linkmesh/linkmesh-operator/test/framework/simagent"
	"github.com/linkmesh/linkmesh-operator/test/framework/testenv"
)

const validConfig = `receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 0.0.0.0:4317
exporters:
  debug:
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
`

// TestRBACSufficient runs the operator, reconcilers and OpAMP server, as the chart's ServiceAccount
// (impersonated; envtest authorizes with RBAC) with leader election in the release namespace, and checks that it
// does its whole job; see operatorDoesItsJob.
func TestRBACSufficient(t *testing.T) {
	installChart(t)
	err := operatorDoesItsJob(t, runAs(namespace, release), namespace, time.Minute)
	if err != nil {
		t.Fatalf("the operator, running with the chart's RBAC, did not do its job: %v", err)
	}
}

// TestRBACCutVerbFails removes one verb the operator needs from the chart's RBAC and expects the check of
// TestRBACSufficient to fail, with what a user would see where there is something to see: proof that the check
// bites, and that the verb is needed.
func TestRBACCutVerbFails(t *testing.T) {
	installChart(t)
	cases := []struct {
		name string
		// kind is the rendered ClusterRole or Role that loses verb on resource in group.
		kind, group, resource, verb string
		// visible, when set, is what the ManagedCollector's Ready condition must show.
		visible func(*v1alpha1.ManagedCollector) error
	}{
		{
			name: "daemonsets patch", kind: "ClusterRole", group: "apps", resource: "daemonsets", verb: "patch",
			visible: func(mc *v1alpha1.ManagedCollector) error {
				c := apimeta.FindStatusCondition(mc.Status.Conditions, v1alpha1.ConditionReady)
				if c == nil || c.Reason != v1alpha1.ReasonApplyFailed || !strings.Contains(c.Message, "forbidden") {
					return fmt.Errorf("want Ready=False %s with a forbidden error, got %+v", v1alpha1.ReasonApplyFailed, c)
				}
				return nil
			},
		},
		{name: "events create", kind: "ClusterRole", group: "events.k8s.io", resource: "events", verb: "create"},
		// The console, exposed, reviews each viewer's token and access.
		{name: "tokenreviews create", kind: "ClusterRole", group: "authentication.k8s.io", resource: "tokenreviews", verb: "create"},
		{name: "subjectaccessreviews create", kind: "ClusterRole", group: "authorization.k8s.io", resource: "subjectaccessreviews", verb: "create"},
		// Without create the Lease never exists, so no replica ever leads. (Without update the leader reconciles
		// until its first renewal fails, then the manager exits: a crash loop, but after this check has passed.)
		{name: "leases create", kind: "Role", group: "coordination.k8s.io", resource: "leases", verb: "create"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// A release of its own, without CRDs, so its RBAC can be cut without touching the real install.
			ns := fmt.Sprintf("rbac-cut-%d", i)
			rel := fmt.Sprintf("cut%d", i)
			ctx := context.Background()
			if err := createNamespace(ctx, ns); err != nil {
				t.Fatal(err)
			}
			objs := render(t, renderOpts{release: rel, namespace: ns, set: []string{"crds.enabled=false"}})
			role := mustFind(t, objs, c.kind, map[string]string{"ClusterRole": rel + "-linkmesh-operator", "Role": rel + "-linkmesh-operator-leader-election"}[c.kind])
			if !cutVerb(t, role, c.group, c.resource, c.verb) {
				t.Fatalf("the chart's %s grants no %s on %s.%s: the case is stale", c.kind, c.verb, c.resource, c.group)
			}
			if err := applyAll(ctx, objs); err != nil {
				t.Fatal(err)
			}

			var seen *v1alpha1.ManagedCollector
			err := operatorDoesItsJob(t, runAs(ns, rel+"-linkmesh-operator"), ns, 15*time.Second, func(mc *v1alpha1.ManagedCollector) { seen = mc })
			if err == nil {
				t.Fatalf("without %s on %s.%s the operator still did its whole job: the RBAC test cannot tell", c.verb, c.resource, c.group)
			}
			t.Logf("as expected: %v", err)
			if c.visible != nil {
				if seen == nil {
					t.Fatal("the ManagedCollector was never read back")
				}
				if verr := c.visible(seen); verr != nil {
					t.Error(verr)
				}
			}
		})
	}
}

// consoleViewer creates a ServiceAccount in ns that may get ManagedCollectors there and returns a token of it.
func consoleViewer(ctx context.Context, ns string) (string, error) {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "console-viewer"}}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "console-viewer"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"managedcollectors"}, Verbs: []string{"get"}},
	}}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "console-viewer"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: sa.Name}},
	}
	for _, o := range []client.Object{sa, role, binding} {
		if err := env.Client.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			return "", err
		}
	}
	tr := &authenticationv1.TokenRequest{}
	if err := env.Client.SubResource("token").Create(ctx, sa, tr); err != nil {
		return "", fmt.Errorf("requesting a token of %s: %w", sa.Name, err)
	}
	return tr.Status.Token, nil
}

// cutVerb removes verb from every rule of role that grants it on group/resource, splitting shared rules so the
// other resources keep it.
func cutVerb(t *testing.T, role *unstructured.Unstructured, group, resource, verb string) bool {
	t.Helper()
	rules, _, _ := unstructured.NestedSlice(role.Object, "rules")
	var out []any
	found := false
	for _, r := range rules {
		rule := r.(map[string]any)
		groups, _, _ := unstructured.NestedStringSlice(rule, "apiGroups")
		resources, _, _ := unstructured.NestedStringSlice(rule, "resources")
		verbs, _, _ := unstructured.NestedStringSlice(rule, "verbs")
		if !slices.Contains(groups, group) || !slices.Contains(resources, resource) || !slices.Contains(verbs, verb) {
			out = append(out, rule)
			continue
		}
		found = true
		if others := slices.DeleteFunc(slices.Clone(resources), func(s string) bool { return s == resource }); len(others) > 0 {
			kept := map[string]any{"apiGroups": toAny(groups), "resources": toAny(others), "verbs": toAny(verbs)}
			out = append(out, kept)
		}
		if rest := slices.DeleteFunc(slices.Clone(verbs), func(s string) bool { return s == verb }); len(rest) > 0 {
			out = append(out, map[string]any{"apiGroups": toAny(groups), "resources": []any{resource}, "verbs": toAny(rest)})
		}
	}
	if err := unstructured.SetNestedSlice(role.Object, out, "rules"); err != nil {
		t.Fatal(err)
	}
	return found
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// runAs is the test control plane's config, impersonating a ServiceAccount the way the API server
// authenticates its token.
func runAs(ns, sa string) *rest.Config {
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + ns + ":" + sa,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
	}
	return cfg
}

// operatorDoesItsJob starts the operator with cfg (its OpAMP listener on 127.0.0.1), lets it win leader election
// in leaseNamespace, and, as an admin, creates in a fresh namespace a DaemonSet ManagedCollector, an invalid one
// and an EnrollmentToken. Simulated supervisors (opamp-go clients) then connect with the collector token and
// with the enrollment token. It returns nil once a user sees everything working: the owned objects, the
// collector Ready, the Warning event, the token Redeemed. Otherwise it returns every missing outcome when timeout
// runs out. observe, if given, sees each read of the valid ManagedCollector. The operator and the agents are
// stopped before it returns.
func operatorDoesItsJob(t *testing.T, cfg *rest.Config, leaseNamespace string, timeout time.Duration, observe ...func(*v1alpha1.ManagedCollector)) error {
	t.Helper()
	op, stop, err := testenv.RunOperator(&testenv.Env{Config: cfg, Client: env.Client}, operator.Options{
		LeaderElect:             true,
		LeaderElectionNamespace: leaseNamespace,
		ConsoleBindAddress:      "127.0.0.1:0",
		ConsoleRequireToken:     true,
		// Every case runs the operator again in this process.
		SkipControllerNameValidation: true,
	})
	if err != nil {
		// Not an RBAC outcome: none of the cut verbs keeps the caches from syncing.
		t.Fatalf("starting the operator: %v", err)
	}
	defer stop()
	addr := op.ListenerAddr().String()
	var agents []*simagent.Agent
	defer func() { // before the operator stops (defers run last-in first-out)
		for _, a := range agents {
			a.Stop()
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ns := leaseNamespace + "-work"
	if err := createNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	c := env.Client
	good := &v1alpha1.ManagedCollector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "agents"},
		Spec:       v1alpha1.ManagedCollectorSpec{Mode: v1alpha1.ModeDaemonSet, Config: validConfig},
	}
	bad := &v1alpha1.ManagedCollector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "broken"},
		Spec:       v1alpha1.ManagedCollectorSpec{Mode: v1alpha1.ModeExternal, Config: "receivers: {}\n"},
	}
	token := &v1alpha1.EnrollmentToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "host"},
		Spec:       v1alpha1.EnrollmentTokenSpec{CollectorRef: v1alpha1.CollectorReference{Name: good.Name}},
	}
	for _, o := range []client.Object{good, bad, token} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
	// connect starts a simulated supervisor with the token under key in the Secret name.
	connect := func(ctx context.Context, name, key, host string) error {
		sec := &corev1.Secret{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, sec); err != nil {
			return err
		}
		if len(sec.Data[key]) == 0 {
			return fmt.Errorf("Secret %s has no %s", name, key)
		}
		agents = append(agents, simagent.Start(t, addr, string(sec.Data[key]), simagent.Options{Host: host}))
		return nil
	}

	var viewerToken string
	steps := []struct {
		what  string
		check func(context.Context) error
	}{
		{"the ManagedCollector's owned objects", func(ctx context.Context) error {
			for _, o := range []client.Object{
				&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: naming.CredentialsSecret(good.Name)}},
				&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: naming.SupervisorConfigMap(good.Name)}},
				&appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: naming.DaemonSet(good.Name)}},
			} {
				if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: o.GetName()}, o); err != nil {
					return fmt.Errorf("%T %s: %w", o, o.GetName(), err)
				}
				if ref := metav1.GetControllerOf(o); ref == nil || ref.UID != good.UID {
					return fmt.Errorf("%T %s is not controlled by the ManagedCollector", o, o.GetName())
				}
			}
			return nil
		}},
		{"a collector pod's supervisor connecting", func(ctx context.Context) error {
			return connect(ctx, naming.CredentialsSecret(good.Name), naming.CollectorTokenKey, "node-1")
		}},
		{"the ManagedCollector Ready", func(ctx context.Context) error {
			mc := &v1alpha1.ManagedCollector{}
			if err := c.Get(ctx, client.ObjectKeyFromObject(good), mc); err != nil {
				return err
			}
			for _, f := range observe {
				f(mc)
			}
			ready := apimeta.FindStatusCondition(mc.Status.Conditions, v1alpha1.ConditionReady)
			if ready == nil || ready.Status != metav1.ConditionTrue || ready.ObservedGeneration != mc.Generation {
				return fmt.Errorf("Ready is %+v, want True for generation %d", ready, mc.Generation)
			}
			return nil
		}},
		{"the Warning event of an invalid config", func(ctx context.Context) error {
			events := &eventsv1.EventList{}
			if err := c.List(ctx, events, client.InNamespace(ns)); err != nil {
				return err
			}
			for _, e := range events.Items {
				if e.Regarding.Name == bad.Name && e.Reason == v1alpha1.EventConfigInvalid && e.Type == corev1.EventTypeWarning {
					return nil
				}
			}
			return fmt.Errorf("no %s Warning event about %s among %d events", v1alpha1.EventConfigInvalid, bad.Name, len(events.Items))
		}},
		{"a host enrolling with the EnrollmentToken", func(ctx context.Context) error {
			et := &v1alpha1.EnrollmentToken{}
			if err := c.Get(ctx, client.ObjectKeyFromObject(token), et); err != nil {
				return err
			}
			if et.Status.Phase != v1alpha1.TokenPending || et.Status.SecretName == "" {
				return fmt.Errorf("phase %q, secretName %q; want Pending and a Secret", et.Status.Phase, et.Status.SecretName)
			}
			return connect(ctx, et.Status.SecretName, v1alpha1.TokenSecretKey, "web-01")
		}},
		{"the console showing the ManagedCollector to a viewer", func(ctx context.Context) error {
			if viewerToken == "" {
				tok, err := consoleViewer(ctx, ns)
				if err != nil {
					return err
				}
				viewerToken = tok
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+op.ConsoleAddr().String()+"/collectors/"+ns+"/"+good.Name, nil)
			if err != nil {
				return err
			}
			req.Header.Set("Authorization", "Bearer "+viewerToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "node-1") {
				return fmt.Errorf("console: %s: %.200s", resp.Status, body)
			}
			return nil
		}},
		{"the EnrollmentToken Redeemed", func(ctx context.Context) error {
			et := &v1alpha1.EnrollmentToken{}
			if err := c.Get(ctx, client.ObjectKeyFromObject(token), et); err != nil {
				return err
			}
			if et.Status.Phase != v1alpha1.TokenRedeemed || et.Status.RedeemedBy == nil || et.Status.RedeemedBy.HostName != "web-01" {
				return fmt.Errorf("phase %q, redeemedBy %+v; want Redeemed by web-01", et.Status.Phase, et.Status.RedeemedBy)
			}
			return nil
		}},
	}
	var errs []error
	for _, st := range steps {
		// The deadline is shared: once it has passed, each remaining step gets one look.
		if err := poll(ctx, st.check); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", st.what, err))
		}
	}
	return errors.Join(errs...)
}
