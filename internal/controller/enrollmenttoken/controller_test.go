package enrollmenttoken_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/test/framework/testenv"
)

const (
	timeout  = 30 * time.Second
	interval = 100 * time.Millisecond
	config   = "receivers:\n  otlp:\nexporters:\n  debug:\nservice:\n  pipelines:\n    logs:\n      receivers: [otlp]\n      exporters: [debug]\n"
)

// newNamespace makes a namespace with a ManagedCollector "hosts" in External mode.
func newNamespace(t *testing.T) string {
	t.Helper()
	ns := testenv.Namespace(t, env.Client, "et")
	ctx := context.Background()
	mc := &v1alpha1.ManagedCollector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hosts"},
		Spec:       v1alpha1.ManagedCollectorSpec{Config: config, Mode: v1alpha1.ModeExternal},
	}
	if err := env.Client.Create(ctx, mc); err != nil {
		t.Fatal(err)
	}
	return ns
}

func newToken(ns, name string, ttl time.Duration) *v1alpha1.EnrollmentToken {
	et := &v1alpha1.EnrollmentToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.EnrollmentTokenSpec{
			CollectorRef: v1alpha1.CollectorReference{Name: "hosts"},
			Description:  "web-01",
		},
	}
	if ttl > 0 {
		et.Spec.TTL = &metav1.Duration{Duration: ttl}
	}
	return et
}

func get(g Gomega, ns, name string) *v1alpha1.EnrollmentToken {
	et := &v1alpha1.EnrollmentToken{}
	g.Expect(env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, et)).To(Succeed())
	return et
}

func waitPhase(t *testing.T, ns, name string, phase v1alpha1.TokenPhase) *v1alpha1.EnrollmentToken {
	t.Helper()
	var et *v1alpha1.EnrollmentToken
	NewWithT(t).Eventually(func(g Gomega) {
		et = get(g, ns, name)
		g.Expect(et.Status.Phase).To(Equal(phase))
		g.Expect(et.Status.ObservedGeneration).To(Equal(et.Generation))
	}, timeout, interval).Should(Succeed())
	return et
}

// touch changes spec.description, which bumps the generation and so triggers a reconcile.
func touch(g Gomega, ns, name string) {
	g.Eventually(func(g Gomega) {
		et := get(g, ns, name)
		et.Spec.Description += "."
		g.Expect(env.Client.Update(context.Background(), et)).To(Succeed())
	}, timeout, interval).Should(Succeed())
}

func TestTokenIsMintedIntoAnOwnedSecretAndNeverIntoTheResource(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	g.Expect(env.Client.Create(context.Background(), newToken(ns, "web-01", 0))).To(Succeed())
	et := waitPhase(t, ns, "web-01", v1alpha1.TokenPending)

	g.Expect(et.Status.SecretName).To(Equal("web-01-enrollment-token"))
	secret := &corev1.Secret{}
	g.Expect(env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: et.Status.SecretName}, secret)).To(Succeed())
	token := string(secret.Data[v1alpha1.TokenSecretKey])
	g.Expect(token).To(HavePrefix("lme_"))
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(token, "lme_"))
	g.Expect(err).NotTo(HaveOccurred(), "the token must be URL-safe")
	g.Expect(raw).To(HaveLen(32), "the token must carry 256 random bits")

	ref := metav1.GetControllerOf(secret)
	g.Expect(ref).NotTo(BeNil())
	g.Expect(ref.UID).To(Equal(et.UID))
	var applied bool
	for _, mf := range secret.ManagedFields {
		applied = applied || (mf.Manager == "linkmesh-operator" && mf.Operation == metav1.ManagedFieldsOperationApply)
	}
	g.Expect(applied).To(BeTrue(), "the Secret is not server-side applied by linkmesh-operator")

	// Default TTL of 15m from the creation time.
	g.Expect(et.Status.ExpiresAt.Time).To(BeTemporally("==", et.CreationTimestamp.Add(15*time.Minute)))
	usable := apimeta.FindStatusCondition(et.Status.Conditions, v1alpha1.ConditionUsable)
	g.Expect(usable.Status).To(Equal(metav1.ConditionTrue))

	// The token appears nowhere in the resource, status included, nor in its events.
	whole, _ := json.Marshal(et)
	g.Expect(string(whole)).NotTo(ContainSubstring(token))
	g.Expect(string(whole)).NotTo(ContainSubstring(strings.TrimPrefix(token, "lme_")))

	// The controller never writes spec.
	g.Expect(et.Generation).To(Equal(int64(1)))
	for _, mf := range et.ManagedFields {
		if mf.Manager == "linkmesh-operator" {
			g.Expect(mf.Subresource).To(Equal("status"))
		}
	}

	// Reconciling again keeps the same token.
	touch(g, ns, "web-01")
	g.Eventually(func(g Gomega) {
		g.Expect(get(g, ns, "web-01").Status.ObservedGeneration).To(Equal(int64(2)))
	}, timeout, interval).Should(Succeed())
	again := &corev1.Secret{}
	g.Expect(env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: et.Status.SecretName}, again)).To(Succeed())
	g.Expect(string(again.Data[v1alpha1.TokenSecretKey])).To(Equal(token))
}

func TestPendingTokenExpires(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	g.Expect(env.Client.Create(context.Background(), newToken(ns, "short", time.Hour))).To(Succeed())
	et := waitPhase(t, ns, "short", v1alpha1.TokenPending)
	g.Expect(et.Status.ExpiresAt.Time).To(BeTemporally("==", et.CreationTimestamp.Add(time.Hour)))

	// Not yet: one minute before expiry it stays Pending.
	clock.SetTime(et.Status.ExpiresAt.Add(-time.Minute))
	touch(g, ns, "short")
	g.Eventually(func(g Gomega) {
		et := get(g, ns, "short")
		g.Expect(et.Status.ObservedGeneration).To(Equal(et.Generation))
		g.Expect(et.Status.Phase).To(Equal(v1alpha1.TokenPending))
	}, timeout, interval).Should(Succeed())

	clock.SetTime(et.Status.ExpiresAt.Add(time.Second))
	touch(g, ns, "short")
	et = waitPhase(t, ns, "short", v1alpha1.TokenExpired)
	usable := apimeta.FindStatusCondition(et.Status.Conditions, v1alpha1.ConditionUsable)
	g.Expect(usable.Status).To(Equal(metav1.ConditionFalse))
	g.Expect(usable.Reason).To(Equal(v1alpha1.ReasonExpired))
	g.Expect(usable.Message).To(ContainSubstring("mint a new EnrollmentToken"))

	// Expired is final, whatever the clock says later.
	clock.SetTime(et.CreationTimestamp.Time)
	touch(g, ns, "short")
	g.Consistently(func(g Gomega) {
		g.Expect(get(g, ns, "short").Status.Phase).To(Equal(v1alpha1.TokenExpired))
	}, 2*time.Second, interval).Should(Succeed())
	clock.SetTime(time.Now())
}

func TestRedeemedTokenDoesNotExpire(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	g.Expect(env.Client.Create(ctx, newToken(ns, "used", time.Hour))).To(Succeed())
	waitPhase(t, ns, "used", v1alpha1.TokenPending)

	// The OpAMP server redeems a token like this: a status update guarded by the resourceVersion.
	var et *v1alpha1.EnrollmentToken
	g.Eventually(func(g Gomega) {
		et = get(g, ns, "used")
		et.Status.Phase = v1alpha1.TokenRedeemed
		et.Status.RedeemedBy = &v1alpha1.RedeemedBy{InstanceUID: "0190c8a2-0000-7000-8000-000000000001", HostName: "web-01"}
		et.Status.RedeemedAt = &metav1.Time{Time: time.Now().Truncate(time.Second)}
		g.Expect(env.Client.Status().Update(ctx, et)).To(Succeed())
	}, timeout, interval).Should(Succeed())

	clock.SetTime(et.Status.ExpiresAt.Add(time.Hour))
	defer clock.SetTime(time.Now())
	touch(g, ns, "used")
	g.Eventually(func(g Gomega) {
		et := get(g, ns, "used")
		g.Expect(et.Status.ObservedGeneration).To(Equal(et.Generation))
		g.Expect(et.Status.Phase).To(Equal(v1alpha1.TokenRedeemed))
		g.Expect(et.Status.RedeemedBy.HostName).To(Equal("web-01"))
		usable := apimeta.FindStatusCondition(et.Status.Conditions, v1alpha1.ConditionUsable)
		g.Expect(usable.Reason).To(Equal(v1alpha1.ReasonRedeemed))
	}, timeout, interval).Should(Succeed())
	// The redeem is announced once, naming the host.
	g.Eventually(func(g Gomega) {
		list := &eventsv1.EventList{}
		g.Expect(env.Client.List(ctx, list, client.InNamespace(ns))).To(Succeed())
		var notes []string
		for _, e := range list.Items {
			if e.Regarding.Kind == "EnrollmentToken" && e.Regarding.Name == "used" && e.Reason == v1alpha1.EventTokenRedeemed {
				g.Expect(e.Type).To(Equal(corev1.EventTypeNormal))
				notes = append(notes, e.Note)
			}
		}
		g.Expect(notes).To(ConsistOf(`redeemed by host "web-01" (instance 0190c8a2-0000-7000-8000-000000000001); only that host may use the token from now on`))
	}, timeout, interval).Should(Succeed())
}

func TestRevokeIsFinal(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	g.Expect(env.Client.Create(ctx, newToken(ns, "gone", 0))).To(Succeed())
	waitPhase(t, ns, "gone", v1alpha1.TokenPending)
	g.Eventually(func(g Gomega) {
		et := get(g, ns, "gone")
		et.Spec.Revoked = true
		g.Expect(env.Client.Update(ctx, et)).To(Succeed())
	}, timeout, interval).Should(Succeed())
	et := waitPhase(t, ns, "gone", v1alpha1.TokenRevoked)
	g.Expect(apimeta.FindStatusCondition(et.Status.Conditions, v1alpha1.ConditionUsable).Reason).To(Equal(v1alpha1.ReasonRevoked))

	et.Spec.Revoked = false
	err := env.Client.Update(ctx, et)
	g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "un-revoking must be refused, got %v", err)
	g.Expect(err.Error()).To(ContainSubstring("a revoked token cannot be reinstated"))
}

func TestUsableFollowsTheCollector(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	et := newToken(ns, "orphan", 0)
	et.Spec.CollectorRef.Name = "later"
	g.Expect(env.Client.Create(ctx, et)).To(Succeed())
	g.Eventually(func(g Gomega) {
		c := apimeta.FindStatusCondition(get(g, ns, "orphan").Status.Conditions, v1alpha1.ConditionUsable)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Reason).To(Equal(v1alpha1.ReasonCollectorNotFound))
		g.Expect(c.Message).To(ContainSubstring("ManagedCollector later does not exist"))
	}, timeout, interval).Should(Succeed())

	g.Expect(env.Client.Create(ctx, &v1alpha1.ManagedCollector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "later"},
		Spec:       v1alpha1.ManagedCollectorSpec{Config: config, Mode: v1alpha1.ModeExternal},
	})).To(Succeed())
	g.Eventually(func(g Gomega) {
		c := apimeta.FindStatusCondition(get(g, ns, "orphan").Status.Conditions, v1alpha1.ConditionUsable)
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
	}, timeout, interval).Should(Succeed())
}

func TestAPIServerRefusesBadTokens(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	cases := []struct {
		name    string
		mutate  func(*v1alpha1.EnrollmentToken)
		message string
	}{
		{"ttl below 1m", func(et *v1alpha1.EnrollmentToken) { et.Spec.TTL = &metav1.Duration{Duration: 30 * time.Second} }, "ttl must be between 1m and 720h"},
		{"ttl above 30d", func(et *v1alpha1.EnrollmentToken) { et.Spec.TTL = &metav1.Duration{Duration: 721 * time.Hour} }, "ttl must be between 1m and 720h"},
		{"missing collectorRef", func(et *v1alpha1.EnrollmentToken) { et.Spec.CollectorRef.Name = "" }, "spec.collectorRef.name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			et := newToken(ns, "bad", 0)
			c.mutate(et)
			err := env.Client.Create(ctx, et)
			g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want Invalid, got %v", err)
			g.Expect(err.Error()).To(ContainSubstring(c.message))
		})
	}

	// The bounds themselves are accepted.
	for _, ttl := range []time.Duration{time.Minute, 720 * time.Hour} {
		g := NewWithT(t)
		et := newToken(ns, fmt.Sprintf("ttl-%d", int(ttl.Minutes())), ttl)
		g.Expect(env.Client.Create(ctx, et)).To(Succeed())
	}

	// collectorRef and ttl are immutable.
	g := NewWithT(t)
	et := newToken(ns, "fixed", time.Hour)
	g.Expect(env.Client.Create(ctx, et)).To(Succeed())
	et.Spec.CollectorRef.Name = "other"
	err := env.Client.Update(ctx, et)
	g.Expect(err).To(MatchError(ContainSubstring("collectorRef is immutable")))
	et = get(g, ns, "fixed")
	et.Spec.TTL = &metav1.Duration{Duration: 2 * time.Hour}
	err = env.Client.Update(ctx, et)
	g.Expect(err).To(MatchError(ContainSubstring("ttl is immutable")))
}
