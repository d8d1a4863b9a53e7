package managedcollector_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/open-telemetry/opamp-go/protobufs"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
	"github.com/linkmesh/linkmesh-operator/test/framework/simagent"
)

func collectorToken(g Gomega, ns, name string) string {
	secret := &corev1.Secret{}
	g.Eventually(func(g Gomega) {
		get(g, ns, naming.CredentialsSecret(name), secret)
		g.Expect(secret.Data[naming.CollectorTokenKey]).NotTo(BeEmpty())
	}, timeout, interval).Should(Succeed())
	return string(secret.Data[naming.CollectorTokenKey])
}

func events(g Gomega, ns, name string) []eventsv1.Event {
	list := &eventsv1.EventList{}
	g.Expect(env.Client.List(context.Background(), list, client.InNamespace(ns))).To(Succeed())
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Name == name && e.Regarding.Kind == "ManagedCollector" {
			out = append(out, e)
		}
	}
	return out
}

func TestAgentsDriveConditionsCountsAndEvents(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	g.Expect(env.Client.Create(ctx, newCollector(ns, "fleet", nil))).To(Succeed())
	waitReconciled(t, ns, "fleet")
	token := collectorToken(g, ns, "fleet")

	start := time.Now()
	agent := simagent.Start(t, opampAddr, token, simagent.Options{Host: "node-a"})
	var mc *v1alpha1.ManagedCollector
	g.Eventually(func(g Gomega) {
		mc = get(g, ns, "fleet", &v1alpha1.ManagedCollector{})
		g.Expect(mc.Status.Counts.Connected).To(Equal(int32(1)))
		g.Expect(condition(mc, v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
	}, timeout, interval).Should(Succeed())
	t.Logf("connect to Ready=True: %v", time.Since(start))

	g.Expect(mc.Status.Connected).To(Equal("1"), "envtest schedules no pods, so nothing is desired: no denominator")
	g.Expect(condition(mc, v1alpha1.ConditionConnected).Message).To(Equal("1 connected; the DaemonSet has no scheduled pods"))
	g.Expect(mc.Status.Counts.ConfigApplied).To(Equal(int32(1)))
	g.Expect(mc.Status.Counts.Healthy).To(Equal(int32(1)))
	for _, c := range []string{v1alpha1.ConditionConnected, v1alpha1.ConditionConfigApplied, v1alpha1.ConditionHealthy} {
		g.Expect(condition(mc, c).Status).To(Equal(metav1.ConditionTrue), c)
	}
	g.Expect(mc.Status.Agents).To(HaveLen(1))
	a := mc.Status.Agents[0]
	g.Expect(a.InstanceUID).To(Equal(agent.UID.String()))
	g.Expect(a.HostName).To(Equal("node-a"))
	g.Expect(a.ManagementMode).To(Equal(v1alpha1.ManagementModeOpAMP))
	g.Expect(a.Connected).To(BeTrue())
	g.Expect(a.ConfigHash).To(Equal(sha(validConfig)))
	g.Expect(a.ConfigStatus).To(Equal(v1alpha1.ConfigStatusApplied))
	g.Eventually(func(g Gomega) {
		g.Expect(events(g, ns, "fleet")).To(ContainElements(
			HaveField("Reason", v1alpha1.EventRegistered),
			HaveField("Reason", v1alpha1.EventConfigApplied),
		))
	}, timeout, interval).Should(Succeed())

	// A second agent fails the next config: conditions and a Warning carry the supervisor's text.
	failing := simagent.Start(t, opampAddr, token, simagent.Options{Host: "node-b",
		Apply: func(rc *protobufs.AgentRemoteConfig) (protobufs.RemoteConfigStatuses, string) {
			if string(rc.Config.ConfigMap["collector.yaml"].Body) == validConfig {
				return protobufs.RemoteConfigStatuses_RemoteConfigStatuses_APPLIED, ""
			}
			return protobufs.RemoteConfigStatuses_RemoteConfigStatuses_FAILED, "unknown type: \"kafka\" for id: \"kafka\""
		}})
	g.Eventually(func(g Gomega) {
		mc = get(g, ns, "fleet", &v1alpha1.ManagedCollector{})
		g.Expect(mc.Status.Counts.ConfigApplied).To(Equal(int32(2)))
	}, timeout, interval).Should(Succeed())
	mc.Spec.Config = validConfig + "# v2\n"
	g.Expect(env.Client.Update(ctx, mc)).To(Succeed())
	g.Eventually(func(g Gomega) {
		mc = get(g, ns, "fleet", &v1alpha1.ManagedCollector{})
		g.Expect(mc.Status.Counts.ConfigFailed).To(Equal(int32(1)))
		g.Expect(mc.Status.Counts.ConfigApplied).To(Equal(int32(1)))
		applied := condition(mc, v1alpha1.ConditionConfigApplied)
		g.Expect(applied.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(applied.Reason).To(Equal(v1alpha1.ReasonConfigFailed))
		g.Expect(applied.Message).To(ContainSubstring(`unknown type: "kafka"`))
		g.Expect(condition(mc, v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionFalse))
	}, timeout, interval).Should(Succeed())
	// The failing agent is listed first.
	g.Expect(mc.Status.Agents[0].InstanceUID).To(Equal(failing.UID.String()))
	g.Expect(mc.Status.Agents[0].ConfigStatus).To(Equal(v1alpha1.ConfigStatusFailed))
	g.Eventually(func(g Gomega) {
		g.Expect(events(g, ns, "fleet")).To(ContainElement(And(
			HaveField("Reason", v1alpha1.EventConfigFailed),
			HaveField("Type", corev1.EventTypeWarning),
			HaveField("Note", ContainSubstring(`unknown type: "kafka"`)),
		)))
	}, timeout, interval).Should(Succeed())

	// Disconnects make the counts drop.
	failing.Stop()
	g.Eventually(func(g Gomega) {
		mc = get(g, ns, "fleet", &v1alpha1.ManagedCollector{})
		g.Expect(mc.Status.Counts.Connected).To(Equal(int32(1)))
		g.Expect(condition(mc, v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
	}, timeout, interval).Should(Succeed())
	agent.Stop()
	g.Eventually(func(g Gomega) {
		mc = get(g, ns, "fleet", &v1alpha1.ManagedCollector{})
		g.Expect(mc.Status.Counts.Connected).To(BeZero())
		g.Expect(condition(mc, v1alpha1.ConditionReady).Reason).To(Equal(v1alpha1.ReasonNoAgentsConnected))
	}, timeout, interval).Should(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(events(g, ns, "fleet")).To(ContainElement(HaveField("Reason", v1alpha1.EventDisconnected)))
	}, timeout, interval).Should(Succeed())
}

// TestTwoHundredAgentsAreCoalesced counts the status writes of the real reconciler, as a watcher of the
// ManagedCollector sees them, while 200 agents connect and apply the config.
func TestTwoHundredAgentsAreCoalesced(t *testing.T) {
	const agents = 200
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	// Nothing is desired in envtest (no pods are scheduled), which caps the collectors at 100.
	g.Expect(env.Client.Create(ctx, newCollector(ns, "big", func(mc *v1alpha1.ManagedCollector) {
		mc.Spec.MaxCollectors = ptr.To(int32(agents))
	}))).To(Succeed())
	waitReconciled(t, ns, "big")
	token := collectorToken(g, ns, "big")

	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Client.Scheme()})
	g.Expect(err).NotTo(HaveOccurred())
	w, err := wc.Watch(ctx, &v1alpha1.ManagedCollectorList{}, client.InNamespace(ns))
	g.Expect(err).NotTo(HaveOccurred())
	defer w.Stop()
	writes := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			if ev.Type == watch.Modified {
				writes++
			}
		}
	}()

	start := time.Now()
	for i := range agents {
		simagent.Start(t, opampAddr, token, simagent.Options{Host: fmt.Sprintf("node-%03d", i)})
	}
	var mc *v1alpha1.ManagedCollector
	g.Eventually(func(g Gomega) {
		mc = get(g, ns, "big", &v1alpha1.ManagedCollector{})
		g.Expect(mc.Status.Counts.Connected).To(Equal(int32(agents)))
		g.Expect(mc.Status.Counts.ConfigApplied).To(Equal(int32(agents)))
		g.Expect(condition(mc, v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
	}, 2*timeout, interval).Should(Succeed())
	elapsed := time.Since(start)
	w.Stop()
	<-done

	g.Expect(mc.Status.Agents).To(HaveLen(v1alpha1.MaxAgentsInStatus), "the agent list is bounded")
	// Coalescing allows one write per second; the bound leaves room for a slow machine, not for a write per agent.
	g.Expect(writes).To(BeNumerically("<=", int(elapsed.Seconds())+5), "status writes for %d agents over %v", agents, elapsed)
	evs := events(g, ns, "big")
	g.Expect(len(evs)).To(BeNumerically("<", 40), "events for %d agents must be aggregated", agents)
	t.Logf("%d agents: %d status writes, %d events, all applied after %v", agents, writes, len(evs), elapsed)
}
