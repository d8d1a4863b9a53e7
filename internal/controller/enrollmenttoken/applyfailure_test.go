package enrollmenttoken_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
)

// tokenWarnings are the Warning Events on the EnrollmentToken name.
func tokenWarnings(g Gomega, ns, name string) []eventsv1.Event {
	list := &eventsv1.EventList{}
	g.Expect(env.Client.List(context.Background(), list, client.InNamespace(ns))).To(Succeed())
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Kind == "EnrollmentToken" && e.Regarding.Name == name && e.Type == corev1.EventTypeWarning {
			out = append(out, e)
		}
	}
	return out
}

// eventCount counts an Event with its series: a repeated Event is one object with a series count.
func eventCount(events []eventsv1.Event) int {
	n := 0
	for _, e := range events {
		n++
		if e.Series != nil {
			n += int(e.Series.Count) - 1
		}
	}
	return n
}

// TestSecretApplyFailureIsReported: a token whose Secret cannot be written says so in its status and with
// one Warning Event, instead of sitting there without a phase, condition or Event; once the obstacle is
// gone it becomes usable.
func TestSecretApplyFailureIsReported(t *testing.T) {
	t.Run("somebody else's Secret has the name", func(t *testing.T) {
		g := NewWithT(t)
		ctx := context.Background()
		ns := newNamespace(t)
		foreign := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-01-enrollment-token"},
			StringData: map[string]string{"password": "hunter2"},
		}
		g.Expect(env.Client.Create(ctx, foreign)).To(Succeed())
		g.Expect(env.Client.Create(ctx, newToken(ns, "web-01", 0))).To(Succeed())
		expectApplyFailed(t, ns, "web-01", "secret "+ns+"/web-01-enrollment-token exists and is not owned by this resource")

		g.Expect(env.Client.Delete(ctx, foreign)).To(Succeed())
		touch(g, ns, "web-01")
		et := waitPhase(t, ns, "web-01", v1alpha1.TokenPending)
		g.Expect(apimeta.FindStatusCondition(et.Status.Conditions, v1alpha1.ConditionUsable).Reason).To(Equal(v1alpha1.ReasonPending))
	})

	t.Run("the API server refuses the Secret", func(t *testing.T) {
		g := NewWithT(t)
		ctx := context.Background()
		ns := newNamespace(t)
		denySecrets(t, ns)
		g.Expect(env.Client.Create(ctx, newToken(ns, "web-02", 0))).To(Succeed())
		expectApplyFailed(t, ns, "web-02", "no Secrets in this namespace, says the test's admission policy")
	})
}

// expectApplyFailed waits for the token's Usable=False SecretApplyFailed with message in it, then checks
// that the retries, with backoff, raised one Warning Event, not one each.
func expectApplyFailed(t *testing.T, ns, name, message string) {
	t.Helper()
	g := NewWithT(t)
	g.Eventually(func(g Gomega) {
		et := get(g, ns, name)
		usable := apimeta.FindStatusCondition(et.Status.Conditions, v1alpha1.ConditionUsable)
		g.Expect(usable).NotTo(BeNil())
		g.Expect(usable.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(usable.Reason).To(Equal(v1alpha1.ReasonSecretApplyFailed))
		g.Expect(usable.Message).To(ContainSubstring("cannot write the token's Secret " + name + "-enrollment-token"))
		g.Expect(usable.Message).To(ContainSubstring(message))
		g.Expect(et.Status.ObservedGeneration).To(Equal(et.Generation))
	}, timeout, interval).Should(Succeed())
	g.Eventually(func(g Gomega) {
		warnings := tokenWarnings(g, ns, name)
		g.Expect(warnings).To(HaveLen(1))
		g.Expect(warnings[0].Reason).To(Equal(v1alpha1.EventApplyFailed))
		g.Expect(warnings[0].Note).To(ContainSubstring(message))
	}, timeout, interval).Should(Succeed())
	// The reconciler keeps retrying (5 ms, 10 ms, ... apart); the failure stays one Event.
	g.Consistently(func(g Gomega) int { return eventCount(tokenWarnings(g, ns, name)) }, 3*time.Second, interval).Should(Equal(1))
}

// denySecrets makes the API server refuse every Secret created in ns, as an admission policy of a cluster
// might.
func denySecrets(t *testing.T, ns string) {
	t.Helper()
	g := NewWithT(t)
	ctx := context.Background()
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "deny-secrets-" + ns},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"secrets"}},
				},
			}}},
			Validations: []admissionregistrationv1.Validation{{
				Expression: "false", Message: "no Secrets in this namespace, says the test's admission policy",
			}},
		},
	}
	g.Expect(env.Client.Create(ctx, policy)).To(Succeed())
	deny := admissionregistrationv1.Deny
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: policy.Name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        policy.Name,
			ValidationActions: []admissionregistrationv1.ValidationAction{deny},
			MatchResources: &admissionregistrationv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{corev1.LabelMetadataName: ns},
			}},
		},
	}
	g.Expect(env.Client.Create(ctx, binding)).To(Succeed())
	t.Cleanup(func() {
		_ = env.Client.Delete(context.Background(), binding)
		_ = env.Client.Delete(context.Background(), policy)
	})
	// Policies take effect a moment later.
	g.Eventually(func() error {
		probe := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "probe-"}}
		err := env.Client.Create(ctx, probe)
		if err == nil {
			_ = env.Client.Delete(ctx, probe)
		}
		return err
	}, timeout, interval).Should(MatchError(ContainSubstring("says the test's admission policy")))
}
