package desired

import (
	"math"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/collectorconfig"
	"github.com/linkmesh/linkmesh-operator/internal/manifests"
)

// TestDesiredIsWhatTheAPISays: every replica derives the same push from the same ConfigMap and spec.
func TestDesiredIsWhatTheAPISays(t *testing.T) {
	g := NewWithT(t)
	off := false
	mc := &v1alpha1.ManagedCollector{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "fleet", UID: "u"},
		Spec: v1alpha1.ManagedCollectorSpec{
			Supervisor: v1alpha1.SupervisorSpec{OwnMetrics: &off, ConfigApplyTimeout: &metav1.Duration{Duration: 7 * time.Second}},
			Rollout: &v1alpha1.RolloutSpec{Strategy: v1alpha1.RolloutProgressive, BakeTime: &metav1.Duration{Duration: 30 * time.Second},
				CanarySelector: &metav1.LabelSelector{MatchLabels: map[string]string{"linkmesh.environment": "staging"}}},
		},
	}
	started := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cm, err := manifests.SupervisorConfigMap(mc, []byte("sup"), manifests.Accepted{Config: "b: 2\n",
		Rollout: &manifests.AcceptedRollout{Stable: "a: 1\n", Phase: v1alpha1.RolloutProgressing, Threshold: 42, StepStarted: started}})
	g.Expect(err).NotTo(HaveOccurred())

	d, ok, err := Desired(mc, cm, 10)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(ok).To(BeTrue())
	g.Expect(d.Hash).To(Equal(collectorconfig.Hash("b: 2\n")))
	g.Expect(d.Config).To(Equal("b: 2\n"))
	g.Expect(d.OwnMetrics).To(BeFalse())
	g.Expect(d.ApplyTimeout).To(Equal(7 * time.Second))
	g.Expect(d.MaxAgents).To(Equal(110), "max(2 x 10, 10 + 100)")
	g.Expect(d.Canary.Matches(labels.Set{"linkmesh.environment": "staging"})).To(BeTrue())
	g.Expect(d.Canary.Matches(labels.Set{"linkmesh.environment": "production"})).To(BeFalse())
	g.Expect(d.Rollout).NotTo(BeNil())
	g.Expect(d.Rollout.Stable.Hash).To(Equal(collectorconfig.Hash("a: 1\n")))
	g.Expect(d.Rollout.Threshold).To(Equal(uint64(42)))
	g.Expect(d.Rollout.StepStarted).To(Equal(started))
	g.Expect(d.Rollout.BakeTime).To(Equal(30 * time.Second))

	limit := int32(7)
	mc.Spec.MaxCollectors = &limit
	d, _, _ = Desired(mc, cm, 1000)
	g.Expect(d.MaxAgents).To(Equal(7), "spec.maxCollectors wins")
	d, _, _ = Desired(mc, cm, math.MaxInt32)
	g.Expect(d.MaxAgents).To(Equal(7))

	mc.Spec.Rollout.CanarySelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "x", Operator: "Bogus"}}}
	_, _, err = Desired(mc, cm, 1)
	g.Expect(err).To(MatchError(ContainSubstring("spec.rollout.canarySelector")))
}
