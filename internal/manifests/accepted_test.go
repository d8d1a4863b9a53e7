package manifests

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/collectorconfig"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
)

// TestAcceptedConfigRoundTrips: what the leader writes is what every replica reads, a rollout's state
// included; a state that is not about the accepted config is refused, not half-used.
func TestAcceptedConfigRoundTrips(t *testing.T) {
	g := NewWithT(t)
	mc := &v1alpha1.ManagedCollector{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "fleet", UID: "u"}}
	started := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, in := range []Accepted{
		{Config: "a: 1\n"},
		{Config: "b: 2\n", Rollout: &AcceptedRollout{Stable: "a: 1\n", Phase: v1alpha1.RolloutProgressing,
			Threshold: 0x8000000000000abc, StepStarted: started, Superseded: []string{"h1"}}},
		{Config: "b: 2\n", Rollout: &AcceptedRollout{Stable: "a: 1\n", Phase: v1alpha1.RolloutRolledBack, StepStarted: started}},
	} {
		cm, err := SupervisorConfigMap(mc, []byte("sup"), in)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(cm.Data[naming.SupervisorConfigKey]).To(Equal("sup"))
		out, ok, err := AcceptedConfig(cm)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(ok).To(BeTrue())
		g.Expect(out).To(Equal(in))
		g.Expect(cm.Data).To(HaveLen(map[bool]int{true: 4, false: 2}[in.Rollout != nil]), "the rollout's keys come and go with it")
	}

	_, ok, err := AcceptedConfig(&corev1.ConfigMap{Data: map[string]string{naming.SupervisorConfigKey: "sup"}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(ok).To(BeFalse(), "no config was ever accepted")

	cm, err := SupervisorConfigMap(mc, []byte("sup"), Accepted{Config: "b: 2\n", Rollout: &AcceptedRollout{Stable: "a: 1\n"}})
	g.Expect(err).NotTo(HaveOccurred())
	cm.Data[naming.CollectorConfigKey] = "c: 3\n"
	_, _, err = AcceptedConfig(cm)
	g.Expect(err).To(MatchError(ContainSubstring("is about revision " + collectorconfig.Hash("b: 2\n"))))
	cm.Data[RolloutStateKey] = "{"
	_, _, err = AcceptedConfig(cm)
	g.Expect(err).To(HaveOccurred())
}
