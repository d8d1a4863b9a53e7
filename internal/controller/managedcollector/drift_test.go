package managedcollector_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	. "github.com/onsi/gomega"
	"github.com/open-telemetry/opamp-go/protobufs"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/test/framework/simagent"
)

// runsNothing is what the supervisor's empty first composition leaves the collector running.
const runsNothing = "extensions:\n  opamp:\nreceivers:\n  nop:\nexporters:\n  nop:\nservice:\n  extensions: [opamp]\n  pipelines:\n    traces/nop:\n      receivers: [nop]\n      exporters: [nop]\n"

// TestDriftIsShownAndHealed: an agent reports APPLIED while its effective config lacks the pipeline. Status
// shows the drift, the operator re-applies the config, and once the agent runs it status recovers.
func TestDriftIsShownAndHealed(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	g.Expect(env.Client.Create(ctx, newCollector(ns, "racy", nil))).To(Succeed())
	waitReconciled(t, ns, "racy")
	token := collectorToken(g, ns, "racy")

	// The first application loses the race; the heal's re-application works.
	var applications atomic.Int32
	var emptied atomic.Bool
	agent := simagent.Start(t, opampAddr, token, simagent.Options{Host: "racy-node",
		Effective: func(rc *protobufs.AgentRemoteConfig) string {
			body := string(rc.GetConfig().GetConfigMap()["collector.yaml"].GetBody())
			if body == "" {
				emptied.Store(true)
				return ""
			}
			if applications.Add(1) == 1 {
				return runsNothing
			}
			return "extensions:\n  opamp:\n" + strings.Replace(body, "service:\n", "service:\n  extensions: [opamp]\n", 1)
		}})

	g.Eventually(func(g Gomega) {
		g.Expect(events(g, ns, "racy")).To(ContainElement(And(
			HaveField("Reason", v1alpha1.EventConfigDrift),
			HaveField("Type", corev1.EventTypeWarning),
			HaveField("Note", ContainSubstring(`pipeline "traces"`)),
		)))
	}, timeout, interval).Should(Succeed())
	g.Eventually(func(g Gomega) {
		mc := get(g, ns, "racy", &v1alpha1.ManagedCollector{})
		g.Expect(condition(mc, v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
		g.Expect(mc.Status.Counts.ConfigApplied).To(Equal(int32(1)))
		g.Expect(mc.Status.Counts.ConfigDrifted).To(BeZero())
		g.Expect(mc.Status.Agents[0].ConfigStatus).To(Equal(v1alpha1.ConfigStatusApplied))
	}, timeout, interval).Should(Succeed())
	g.Expect(emptied.Load()).To(BeTrue(), "the heal pushes an empty config first")
	g.Expect(applications.Load()).To(Equal(int32(2)), "then the desired config again")
	g.Eventually(func(g Gomega) {
		g.Expect(events(g, ns, "racy")).To(ContainElement(HaveField("Reason", v1alpha1.EventConfigHealed)))
	}, timeout, interval).Should(Succeed())
	g.Expect(agent.Errors()).To(BeEmpty())
}

// TestPersistentDriftKeepsReadyFalse: an agent that never runs the config stays visible as drifted.
func TestPersistentDriftKeepsReadyFalse(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	g.Expect(env.Client.Create(ctx, newCollector(ns, "stuck", nil))).To(Succeed())
	waitReconciled(t, ns, "stuck")
	token := collectorToken(g, ns, "stuck")
	simagent.Start(t, opampAddr, token, simagent.Options{Host: "stuck-node",
		Effective: func(*protobufs.AgentRemoteConfig) string { return runsNothing }})

	g.Eventually(func(g Gomega) {
		mc := get(g, ns, "stuck", &v1alpha1.ManagedCollector{})
		g.Expect(mc.Status.Counts.ConfigDrifted).To(Equal(int32(1)))
		applied := condition(mc, v1alpha1.ConditionConfigApplied)
		g.Expect(applied.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(applied.Reason).To(Equal(v1alpha1.ReasonConfigDrift))
		g.Expect(applied.Message).To(ContainSubstring(`pipeline "traces"`))
		ready := condition(mc, v1alpha1.ConditionReady)
		g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(ready.Reason).To(Equal(v1alpha1.ReasonConfigDrift))
		g.Expect(mc.Status.Agents[0].ConfigStatus).To(Equal(v1alpha1.ConfigStatusDrifted))
	}, timeout, interval).Should(Succeed())
}
