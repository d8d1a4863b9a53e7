package enrollmenttoken_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/controller/enrollmenttoken"
)

// staleToken reads one EnrollmentToken as it was at a moment, as an informer cache that has not seen the
// later writes yet would; everything else it reads from the API server.
type staleToken struct {
	client.Client
	key      types.NamespacedName
	snapshot *v1alpha1.EnrollmentToken
}

func (c staleToken) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if et, ok := obj.(*v1alpha1.EnrollmentToken); ok && key == c.key {
		c.snapshot.DeepCopyInto(et)
		return nil
	}
	return c.Client.Get(ctx, key, obj, opts...)
}

// TestStaleReconcileAnnouncesNothing: a reconcile that read the token before its redeem was recorded in
// status computes the redeem again; its status write conflicts, and it records no second Redeemed Event.
func TestStaleReconcileAnnouncesNothing(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	g.Expect(env.Client.Create(ctx, newToken(ns, "stale", time.Hour))).To(Succeed())
	waitPhase(t, ns, "stale", v1alpha1.TokenPending)

	// The OpAMP server's redeem; what a reconcile read just after it is the snapshot.
	var snapshot *v1alpha1.EnrollmentToken
	g.Eventually(func(g Gomega) {
		et := get(g, ns, "stale")
		et.Status.Phase = v1alpha1.TokenRedeemed
		et.Status.RedeemedBy = &v1alpha1.RedeemedBy{InstanceUID: "0190c8a2-0000-7000-8000-000000000002", HostName: "web-02"}
		et.Status.RedeemedAt = &metav1.Time{Time: time.Now().Truncate(time.Second)}
		g.Expect(env.Client.Status().Update(ctx, et)).To(Succeed())
		snapshot = et.DeepCopy()
	}, timeout, interval).Should(Succeed())
	// The operator's reconciler records the redeem in status (and announces it).
	g.Eventually(func(g Gomega) {
		usable := apimeta.FindStatusCondition(get(g, ns, "stale").Status.Conditions, v1alpha1.ConditionUsable)
		g.Expect(usable).NotTo(BeNil())
		g.Expect(usable.Reason).To(Equal(v1alpha1.ReasonRedeemed))
	}, timeout, interval).Should(Succeed())

	// Two more reconciles from the snapshot, from before that write.
	key := types.NamespacedName{Namespace: ns, Name: "stale"}
	recorder := events.NewFakeRecorder(10)
	r := &enrollmenttoken.Reconciler{Client: staleToken{Client: env.Client, key: key, snapshot: snapshot}, APIReader: env.Client,
		Recorder: recorder, Clock: clock}
	for range 2 {
		_, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: key})
		g.Expect(err).NotTo(HaveOccurred())
	}
	g.Expect(recorder.Events).To(BeEmpty(), "a reconcile from a stale read announced the redeem again")
}
