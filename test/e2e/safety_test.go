//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
	"github.com/linkmesh/linkmesh-operator/test/framework/otlptest"
	"github.com/linkmesh/linkmesh-operator/test/framework/testenv"
)

// editConfig sets spec.config, retrying on a conflict with a status write.
func editConfig(t *testing.T, ns, name, config string, mut func(*v1alpha1.ManagedCollectorSpec)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		mc := &v1alpha1.ManagedCollector{}
		if err := env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, mc); err != nil {
			return err
		}
		mc.Spec.Config = config
		if mut != nil {
			mut(&mc.Spec)
		}
		return env.Client.Update(context.Background(), mc)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func warnings(g Gomega, ns, name, reason string) []string {
	var out []string
	for _, e := range eventsOf(g, ns, name) {
		if e.Type == corev1.EventTypeWarning && e.Reason == reason {
			out = append(out, e.Note)
		}
	}
	return out
}

// collectorPid finds the collector the supervisor of dir spawned: its command line names the config in the
// supervisor's storage directory.
func collectorPid(t *testing.T, dir string) int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(raw), "\x00")
		if len(args) > 0 && filepath.Base(args[0]) == filepath.Base(bins.Collector) && strings.Contains(string(raw), dir) {
			return pid
		}
	}
	return 0
}

// TestPushesRaiseNoWarningACrashDoes: with the real supervisor, four config pushes (each restarts the
// collector, which reports unhealthy meanwhile) raise no Unhealthy Warning; a collector killed by hand does.
func TestPushesRaiseNoWarningACrashDoes(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	out := otlptest.NewSink(t)
	port := freePort(t)
	createCollector(t, ns, "calm", v1alpha1.ManagedCollectorSpec{
		Config:     otlptest.Pipeline(port, out.URL, ""),
		Supervisor: v1alpha1.SupervisorSpec{ConfigApplyTimeout: &metav1.Duration{Duration: 2 * time.Second}},
	})
	dir := nodeDir(t, "calm")
	startNode(t, ns, "calm", dir)
	g.Eventually(func(g Gomega) {
		g.Expect(cond(getMC(g, ns, "calm"), v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
	}, timeout, interval).Should(Succeed())

	for i := range 4 {
		cfg := otlptest.Pipeline(port, out.URL, "") + fmt.Sprintf("# push %d\n", i)
		editConfig(t, ns, "calm", cfg, nil)
		g.Eventually(func(g Gomega) {
			mc := getMC(g, ns, "calm")
			g.Expect(mc.Status.Agents).To(HaveLen(1))
			g.Expect(mc.Status.Agents[0].ConfigHash).To(Equal(sha(cfg)))
			g.Expect(cond(mc, v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
		}, timeout, interval).Should(Succeed())
	}
	// The last ConfigApplied is in; any Unhealthy of the pushes would be too.
	g.Eventually(func(g Gomega) {
		n := 0
		for _, e := range eventsOf(g, ns, "calm") {
			if e.Reason == v1alpha1.EventConfigApplied {
				n++
			}
		}
		g.Expect(n).To(BeNumerically(">=", 2))
	}, timeout, interval).Should(Succeed())
	g.Consistently(func(g Gomega) {
		g.Expect(warnings(g, ns, "calm", v1alpha1.EventUnhealthy)).To(BeEmpty(), "a config push is no Warning")
	}, 3*time.Second, interval).Should(Succeed())

	pid := collectorPid(t, dir)
	g.Expect(pid).NotTo(BeZero(), "the supervisor's collector runs")
	g.Expect(syscall.Kill(pid, syscall.SIGKILL)).To(Succeed())
	killed := time.Now()
	g.Eventually(func(g Gomega) {
		g.Expect(warnings(g, ns, "calm", v1alpha1.EventUnhealthy)).NotTo(BeEmpty(), "a collector that died is")
	}, timeout, interval).Should(Succeed())
	t.Logf("MEASURE collector killed -> Unhealthy Warning: %v; %q", time.Since(killed), warnings(g, ns, "calm", v1alpha1.EventUnhealthy))
}

// plainCollector runs the e2e collector with only the opamp extension, as people attach existing
// collectors for visibility: it reports its health and effective config and does not accept remote config.
func plainCollector(t *testing.T, token string, port int) {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`extensions:
  opamp:
    server:
      ws:
        endpoint: ws://%s/v1/opamp
        headers:
          Authorization: "Bearer ${env:LINKMESH_TOKEN}"
    capabilities:
      reports_effective_config: true
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:%d
exporters:
  debug:
service:
  extensions: [opamp]
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
`, bindAddr, port)
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(dir, "collector.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bins.Collector, "--config", path)
	cmd.Env = append(os.Environ(), "LINKMESH_TOKEN="+token)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		_ = logFile.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logFile.Name()); err == nil {
				t.Logf("plain collector log:\n%s", tail(b, 3000))
			}
		}
	})
}

// TestPlainCollectorIsAReadOnlyMember: the real collector with only its opamp extension, beside the real
// supervisor: both connect, the ManagedCollector is Ready, and the plain one is listed as read-only.
func TestPlainCollectorIsAReadOnlyMember(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	out := otlptest.NewSink(t)
	cfg := otlptest.Pipeline(freePort(t), out.URL, "")
	createCollector(t, ns, "mixed", v1alpha1.ManagedCollectorSpec{Config: cfg})
	startNode(t, ns, "mixed", nodeDir(t, "mixed"))
	sec := &corev1.Secret{}
	g.Expect(env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: naming.CredentialsSecret("mixed")}, sec)).To(Succeed())
	plainCollector(t, string(sec.Data[naming.CollectorTokenKey]), freePort(t))

	var mc *v1alpha1.ManagedCollector
	g.Eventually(func(g Gomega) {
		mc = getMC(g, ns, "mixed")
		g.Expect(mc.Status.Counts.Connected).To(Equal(int32(2)))
		g.Expect(mc.Status.Counts.ReadOnly).To(Equal(int32(1)))
		g.Expect(mc.Status.Counts.ConfigApplied).To(Equal(int32(1)))
		g.Expect(cond(mc, v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue), cond(mc, v1alpha1.ConditionReady).Message)
	}, timeout, interval).Should(Succeed())
	g.Expect(cond(mc, v1alpha1.ConditionReady).Message).To(Equal("1 collector runs the current config and is healthy; 1 read-only member"))
	var readOnly, managed int
	for _, a := range mc.Status.Agents {
		switch a.ConfigStatus {
		case v1alpha1.ConfigStatusReadOnly:
			readOnly++
			g.Expect(a.Message).To(ContainSubstring("read-only member"))
			g.Expect(a.ConfigHash).NotTo(BeEmpty(), "the hash of the effective config it reports")
		case v1alpha1.ConfigStatusApplied:
			managed++
			g.Expect(a.ConfigHash).To(Equal(sha(cfg)))
		}
	}
	g.Expect([]int{readOnly, managed}).To(Equal([]int{1, 1}))
	g.Eventually(func(g Gomega) {
		var notes []string
		for _, e := range eventsOf(g, ns, "mixed") {
			if e.Reason == v1alpha1.EventRegistered {
				g.Expect(e.Type).To(Equal(corev1.EventTypeNormal))
				notes = append(notes, e.Note)
			}
		}
		g.Expect(strings.Join(notes, "\n")).To(ContainSubstring("registered as a read-only member"))
	}, timeout, interval).Should(Succeed())
	t.Logf("kubectl get mc -o wide:\n%s", getWide(t, ns, "managedcollectors"))
	for _, a := range mc.Status.Agents {
		t.Logf("agent %s host=%s pod=%s connected=%v healthy=%v config=%s %s %q", a.InstanceUID, a.HostName, a.PodName,
			a.Connected, a.Healthy, a.ConfigStatus, short(a.ConfigHash), a.Message)
	}
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// TestProgressiveRolloutRollsBackARuntimeFailure: a config that passes every check but cannot run on the
// host (its receiver port is taken) is rolled out progressively; the canary fails, the rollout rolls back,
// and the collector runs the previous config again, with data flowing.
func TestProgressiveRolloutRollsBackARuntimeFailure(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	out := otlptest.NewSink(t)
	good := freePort(t)
	stable := otlptest.Pipeline(good, out.URL, "")
	createCollector(t, ns, "careful", v1alpha1.ManagedCollectorSpec{
		Config:     stable,
		Supervisor: v1alpha1.SupervisorSpec{ConfigApplyTimeout: &metav1.Duration{Duration: 2 * time.Second}},
		Rollout: &v1alpha1.RolloutSpec{
			Strategy: v1alpha1.RolloutProgressive,
			Steps:    []intstr.IntOrString{intstr.FromInt32(1), intstr.FromString("100%")},
			BakeTime: &metav1.Duration{Duration: 10 * time.Second},
		},
	})
	startNode(t, ns, "careful", nodeDir(t, "careful"))
	g.Eventually(func(g Gomega) {
		g.Expect(cond(getMC(g, ns, "careful"), v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
	}, timeout, interval).Should(Succeed())
	g.Eventually(func() error { return otlptest.SendSpan(good) }, timeout, interval).Should(Succeed())

	// The port the new config wants is held: the collector cannot start with it.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	defer taken.Close()
	bad := otlptest.Pipeline(taken.Addr().(*net.TCPAddr).Port, out.URL, "")
	edited := time.Now()
	editConfig(t, ns, "careful", bad, nil)
	g.Eventually(func(g Gomega) {
		mc := getMC(g, ns, "careful")
		g.Expect(mc.Status.Rollout).NotTo(BeNil())
		g.Expect(mc.Status.Rollout.Revision).To(Equal(sha(bad)))
		g.Expect(mc.Status.Rollout.Phase).To(Equal(v1alpha1.RolloutRolledBack), "%+v", mc.Status.Rollout)
	}, 2*timeout, interval).Should(Succeed())
	mc := getMC(g, ns, "careful")
	t.Logf("MEASURE edit -> RolledBack with the real supervisor: %v; last failure: %+v", time.Since(edited), mc.Status.Rollout.LastFailure)
	g.Expect(cond(mc, v1alpha1.ConditionReady).Reason).To(Equal(v1alpha1.ReasonRolledBack))

	// The collector runs the stable config again and data flows.
	g.Eventually(func(g Gomega) {
		mc := getMC(g, ns, "careful")
		g.Expect(mc.Status.Agents).To(HaveLen(1))
		g.Expect(mc.Status.Agents[0].ConfigHash).To(Equal(sha(stable)))
		g.Expect(mc.Status.Agents[0].ConfigStatus).To(Equal(v1alpha1.ConfigStatusApplied))
	}, timeout, interval).Should(Succeed())
	before := out.Traces()
	g.Eventually(func() error { return otlptest.SendSpan(good) }, timeout, interval).Should(Succeed())
	g.Eventually(out.Traces, timeout, interval).Should(BeNumerically(">", before))
	t.Logf("MEASURE edit -> data flowing on the stable config again: %v", time.Since(edited))
	g.Eventually(func(g Gomega) {
		g.Expect(warnings(g, ns, "careful", v1alpha1.EventRolledBack)).To(HaveLen(1))
	}, timeout, interval).Should(Succeed())
}

// getWide is `kubectl get RESOURCE -o wide` in namespace ns.
func getWide(t *testing.T, ns, resource string) string {
	t.Helper()
	out, err := testenv.Wide(env.Config, "/apis/"+v1alpha1.GroupVersion.String()+"/namespaces/"+ns+"/"+resource)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
