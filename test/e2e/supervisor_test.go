//go:build e2e

package e2e

import (
	"context"
	"os"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/manifests"
	"github.com/linkmesh/linkmesh-operator/test/framework/otlptest"
	"github.com/linkmesh/linkmesh-operator/test/infrastructure/localagent"
)

// TestRealSupervisorRunsTheConfig covers a DaemonSet-mode ManagedCollector with one node played here: the
// supervisor connects, the collector runs the pushed pipeline, a config change is applied, and a config the
// collector cannot run is refused while the old pipeline keeps running.
func TestRealSupervisorRunsTheConfig(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	out := otlptest.NewSink(t)
	p1, p2 := freePort(t), freePort(t)
	cfg1 := otlptest.Pipeline(p1, out.URL, "")
	createCollector(t, ns, "edge", v1alpha1.ManagedCollectorSpec{
		Config:     cfg1,
		Supervisor: v1alpha1.SupervisorSpec{ConfigApplyTimeout: &metav1.Duration{Duration: 2 * time.Second}},
	})
	var mc *v1alpha1.ManagedCollector

	// 1. A real supervisor connects.
	start := time.Now()
	_, _ = startNode(t, ns, "edge", nodeDir(t, "edge"))
	var connectedAt time.Duration
	g.Eventually(func(g Gomega) {
		mc = getMC(g, ns, "edge")
		g.Expect(mc.Status.Counts.Connected).To(Equal(int32(1)))
		if connectedAt == 0 {
			connectedAt = time.Since(start)
		}
		g.Expect(cond(mc, v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue), cond(mc, v1alpha1.ConditionReady).Message)
	}, timeout, interval).Should(Succeed())
	t.Logf("MEASURE supervisor start -> Connected: %v; -> Ready (config applied): %v", connectedAt, time.Since(start))
	host, _ := os.Hostname()
	g.Expect(mc.Status.Agents).To(HaveLen(1))
	g.Expect(mc.Status.Agents[0].HostName).To(Equal(host))
	g.Expect(mc.Status.Agents[0].ConfigHash).To(Equal(sha(cfg1)))
	g.Expect(mc.Status.Agents[0].ConfigStatus).To(Equal(v1alpha1.ConfigStatusApplied))
	uid := mc.Status.Agents[0].InstanceUID
	g.Eventually(func(g Gomega) {
		g.Expect(eventsOf(g, ns, "edge")).To(ContainElements(
			HaveField("Reason", v1alpha1.EventRegistered),
			HaveField("Reason", v1alpha1.EventConfigApplied),
		))
	}, timeout, interval).Should(Succeed())

	// 2. The collector runs the pushed config: OTLP in on p1 comes out at the sink.
	g.Eventually(func() error { return otlptest.SendSpan(p1) }, timeout, interval).Should(Succeed())
	g.Eventually(out.Traces, timeout, interval).Should(BeNumerically(">=", 1))

	// 3. A config change is applied: the receiver moves to p2.
	cfg2 := otlptest.Pipeline(p2, out.URL, "")
	mc = getMC(g, ns, "edge")
	mc.Spec.Config = cfg2
	g.Expect(env.Client.Update(ctx, mc)).To(Succeed())
	edited := time.Now()
	g.Eventually(func(g Gomega) {
		mc = getMC(g, ns, "edge")
		g.Expect(mc.Status.ConfigHash).To(Equal(sha(cfg2)))
		g.Expect(mc.Status.Agents).To(HaveLen(1))
		g.Expect(mc.Status.Agents[0].ConfigHash).To(Equal(sha(cfg2)))
		g.Expect(cond(mc, v1alpha1.ConditionConfigApplied).Status).To(Equal(metav1.ConditionTrue))
	}, timeout, interval).Should(Succeed())
	t.Logf("MEASURE spec edit -> ConfigApplied: %v (config_apply_timeout 2s)", time.Since(edited))
	before := out.Traces()
	g.Eventually(func() error { return otlptest.SendSpan(p2) }, timeout, interval).Should(Succeed())
	g.Eventually(out.Traces, timeout, interval).Should(BeNumerically(">", before))
	g.Eventually(func() error { return otlptest.SendSpan(p1) }, timeout, interval).ShouldNot(Succeed(), "the old receiver port still answers")

	// 4. A config naming a component this collector lacks passes the operator's checks but fails the
	// collector's own validation: ConfigFailed with its message, Ready=False, the old pipeline keeps running.
	bad := otlptest.Pipeline(p2, out.URL, "kafka")
	mc = getMC(g, ns, "edge")
	mc.Spec.Config = bad
	g.Expect(env.Client.Update(ctx, mc)).To(Succeed())
	g.Eventually(func(g Gomega) {
		mc = getMC(g, ns, "edge")
		g.Expect(mc.Status.Counts.ConfigFailed).To(Equal(int32(1)))
		g.Expect(cond(mc, v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionFalse))
	}, timeout, interval).Should(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(eventsOf(g, ns, "edge")).To(ContainElement(And(
			HaveField("Reason", v1alpha1.EventConfigFailed),
			HaveField("Type", corev1.EventTypeWarning),
			HaveField("Note", ContainSubstring("kafka")),
		)))
	}, timeout, interval).Should(Succeed())
	t.Logf("ConfigFailed message: %s", mc.Status.Agents[0].Message)
	before = out.Traces()
	g.Expect(otlptest.SendSpan(p2)).To(Succeed(), "the old pipeline must keep running")
	g.Eventually(out.Traces, timeout, interval).Should(BeNumerically(">", before))

	// Fixing the config makes it Ready again, with the same instance.
	fixed := otlptest.Pipeline(p2, out.URL, "") + "# fixed\n"
	mc = getMC(g, ns, "edge")
	mc.Spec.Config = fixed
	g.Expect(env.Client.Update(ctx, mc)).To(Succeed())
	g.Eventually(func(g Gomega) {
		mc = getMC(g, ns, "edge")
		g.Expect(cond(mc, v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
		g.Expect(mc.Status.Agents).To(HaveLen(1))
		g.Expect(mc.Status.Agents[0].InstanceUID).To(Equal(uid))
		g.Expect(mc.Status.Agents[0].ConfigHash).To(Equal(sha(fixed)))
	}, timeout, interval).Should(Succeed())
}

// TestCredentialsAreEnforced: a wrong token gets 401; an enrolled host redeems its token, keeps it across
// restarts, and a second host with the same token is refused.
func TestCredentialsAreEnforced(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	out := otlptest.NewSink(t)

	// A wrong token: 401, and the ManagedCollector shows no agent.
	createCollector(t, ns, "pods", v1alpha1.ManagedCollectorSpec{Config: otlptest.Pipeline(freePort(t), out.URL, "")})
	wrong, err := localagent.FromCluster(ctx, env.Client, types.NamespacedName{Namespace: ns, Name: "pods"}, nodeDir(t, "wrong"), bins, "node-x", "pods-collector-x")
	g.Expect(err).NotTo(HaveOccurred())
	wrong.Env[0] = manifests.EnvCollectorToken + "=lmc_wrong-token"
	// One collector per host at a time: two collectors on one machine contend for the default
	// internal-metrics port 8888.
	wrongProc := run(t, wrong)
	g.Eventually(func() string {
		b, _ := os.ReadFile(wrong.LogPath())
		return string(b)
	}, timeout, interval).Should(ContainSubstring("401"))
	g.Consistently(func(g Gomega) {
		g.Expect(getMC(g, ns, "pods").Status.Counts.Connected).To(BeZero())
	}, 3*time.Second, interval).Should(Succeed())
	g.Expect(wrongProc.Stop(15 * time.Second)).To(Succeed())

	// A host enrolled with an EnrollmentToken in External mode.
	cfg := otlptest.Pipeline(freePort(t), out.URL, "")
	g.Expect(env.Client.Create(ctx, &v1alpha1.ManagedCollector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hosts"},
		Spec:       v1alpha1.ManagedCollectorSpec{Config: cfg, Mode: v1alpha1.ModeExternal},
	})).To(Succeed())
	g.Expect(env.Client.Create(ctx, &v1alpha1.EnrollmentToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-01"},
		Spec:       v1alpha1.EnrollmentTokenSpec{CollectorRef: v1alpha1.CollectorReference{Name: "hosts"}},
	})).To(Succeed())
	var token string
	g.Eventually(func(g Gomega) {
		et := &v1alpha1.EnrollmentToken{}
		g.Expect(env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "web-01"}, et)).To(Succeed())
		g.Expect(et.Status.Phase).To(Equal(v1alpha1.TokenPending))
		secret := &corev1.Secret{}
		g.Expect(env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: et.Status.SecretName}, secret)).To(Succeed())
		token = string(secret.Data[v1alpha1.TokenSecretKey])
	}, timeout, interval).Should(Succeed())

	opMu.Lock()
	endpoint := "ws://" + bindAddr + "/v1/opamp"
	opMu.Unlock()
	hostYAML, err := manifests.SupervisorYAML(manifests.SupervisorOptions{
		Endpoint: endpoint, Authorization: "Bearer " + token, Executable: "/usr/local/bin/otelcol-contrib",
		StorageDirectory: "/var/lib/otelcol-supervisor", ConfigApplyTimeout: 2 * time.Second,
		Attributes: map[string]string{"linkmesh.environment": "e2e"}, SupervisorVersion: manifests.DefaultPodSupervisorVersion,
	})
	g.Expect(err).NotTo(HaveOccurred())
	hostDir := nodeDir(t, "web-01")
	host, err := localagent.New(hostDir, hostYAML, nil, bins)
	g.Expect(err).NotTo(HaveOccurred())
	first := run(t, host)
	var uid string
	g.Eventually(func(g Gomega) {
		et := &v1alpha1.EnrollmentToken{}
		g.Expect(env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "web-01"}, et)).To(Succeed())
		g.Expect(et.Status.Phase).To(Equal(v1alpha1.TokenRedeemed))
		g.Expect(et.Status.RedeemedBy).NotTo(BeNil())
		uid = et.Status.RedeemedBy.InstanceUID
		mc := getMC(g, ns, "hosts")
		g.Expect(mc.Status.Counts.Connected).To(Equal(int32(1)))
		g.Expect(mc.Status.Agents[0].InstanceUID).To(Equal(uid))
		g.Expect(cond(mc, v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
	}, timeout, interval).Should(Succeed())

	// The same supervisor, restarted with the same files, reconnects as the same instance.
	g.Expect(first.Stop(15 * time.Second)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(getMC(g, ns, "hosts").Status.Counts.Connected).To(BeZero())
	}, timeout, interval).Should(Succeed())
	second := run(t, host)
	g.Eventually(func(g Gomega) {
		mc := getMC(g, ns, "hosts")
		g.Expect(mc.Status.Counts.Connected).To(Equal(int32(1)))
		g.Expect(mc.Status.Agents).To(HaveLen(1))
		g.Expect(mc.Status.Agents[0].InstanceUID).To(Equal(uid))
	}, timeout, interval).Should(Succeed())

	// A second supervisor with the same token and a fresh storage directory is refused by the server, even
	// while the first is offline: the token is bound to the first instance.
	g.Expect(second.Stop(15 * time.Second)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(getMC(g, ns, "hosts").Status.Counts.Connected).To(BeZero())
	}, timeout, interval).Should(Succeed())
	intruder, err := localagent.New(nodeDir(t, "web-02"), hostYAML, nil, bins)
	g.Expect(err).NotTo(HaveOccurred())
	run(t, intruder)
	g.Eventually(func() string {
		b, _ := os.ReadFile(intruder.LogPath())
		return string(b)
	}, timeout, interval).Should(ContainSubstring("this enrollment token was redeemed by another collector instance"))
	g.Consistently(func(g Gomega) {
		mc := getMC(g, ns, "hosts")
		g.Expect(mc.Status.Counts.Connected).To(BeZero())
		for _, a := range mc.Status.Agents {
			g.Expect(a.InstanceUID).To(Equal(uid))
		}
		et := &v1alpha1.EnrollmentToken{}
		g.Expect(env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "web-01"}, et)).To(Succeed())
		g.Expect(et.Status.RedeemedBy.InstanceUID).To(Equal(uid))
	}, 3*time.Second, interval).Should(Succeed())
}

// TestOperatorRestartLosesNothing restarts the operator under a running supervisor: it reconnects, and the
// status is right again with no duplicate agent.
func TestOperatorRestartLosesNothing(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	out := otlptest.NewSink(t)
	cfg := otlptest.Pipeline(freePort(t), out.URL, "")
	createCollector(t, ns, "steady", v1alpha1.ManagedCollectorSpec{Config: cfg})
	startNode(t, ns, "steady", nodeDir(t, "steady"))
	var uid string
	g.Eventually(func(g Gomega) {
		mc := getMC(g, ns, "steady")
		g.Expect(cond(mc, v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
		uid = mc.Status.Agents[0].InstanceUID
	}, timeout, interval).Should(Succeed())

	restarted := time.Now()
	g.Expect(restartOperator()).To(Succeed())
	g.Eventually(func(g Gomega) {
		mc := getMC(g, ns, "steady")
		g.Expect(mc.Status.Agents).To(HaveLen(1))
		g.Expect(mc.Status.Agents[0].InstanceUID).To(Equal(uid))
		// lastSeen has a resolution of a second in the API.
		g.Expect(mc.Status.Agents[0].LastSeen.Time).To(BeTemporally(">=", restarted.Truncate(time.Second)))
		g.Expect(mc.Status.Counts.Connected).To(Equal(int32(1)))
		g.Expect(cond(mc, v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
	}, timeout, interval).Should(Succeed())
	t.Logf("MEASURE operator restart -> Ready again: %v", time.Since(restarted))
}
