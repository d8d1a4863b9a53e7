//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/test/framework/manager"
	"github.com/linkmesh/linkmesh-operator/test/framework/otlptest"
	"github.com/linkmesh/linkmesh-operator/test/framework/tcpproxy"
	"github.com/linkmesh/linkmesh-operator/test/framework/testenv"
)

// TestSupervisorMovesToTheSurvivingReplica runs two replicas of the manager binary with leader election
// behind a proxy that plays their Service, and a real supervisor that joins through it. The replica that
// holds the supervisor's WebSocket is killed with SIGKILL: the supervisor reconnects through the proxy to
// the survivor, status is right again (one collector, connected, running the same config, listed once),
// a Reconnected Event says so and no second Registered, and the collector ran on untouched: the same
// process, no config pushed to it.
//
// The proxy sends its first connection, the supervisor's, to the first replica, which starts alone so
// that it leads; the test checks both. The replica killed is the leader, so the survivor both takes the
// collector and becomes the one that writes status. (test/replicas kills a replica that does not lead,
// with simulated supervisors: there the dead replica's share counts its collectors until its Lease
// lapses.)
func TestSupervisorMovesToTheSurvivingReplica(t *testing.T) {
	g := NewWithT(t)
	pauseOperator(t)
	operatorNS := scratchNamespace(t, "operator")
	ns := scratchNamespace(t, "e2e")
	rs := startReplicas(t, operatorNS)

	const name = "failover"
	out := otlptest.NewSink(t)
	port := freePort(t)
	cfg := otlptest.Pipeline(port, out.URL, "")
	createCollector(t, ns, name, v1alpha1.ManagedCollectorSpec{
		Mode:       v1alpha1.ModeDaemonSet,
		Config:     cfg,
		Supervisor: v1alpha1.SupervisorSpec{ConfigApplyTimeout: &metav1.Duration{Duration: 2 * time.Second}},
	})
	t.Cleanup(func() {
		if t.Failed() {
			for _, e := range eventsOf(NewWithT(t), ns, name) {
				t.Logf("Event %s %s (series: %v): %s", e.Type, e.Reason, e.Series != nil, e.Note)
			}
		}
		deleteCollector(t, ns, name)
	})
	dir := nodeDir(t, name)
	node, proc := startNode(t, ns, name, dir)
	supervisorYAML, err := os.ReadFile(node.ConfigPath())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(supervisorYAML)).To(ContainSubstring("ws://"+rs.proxy.Addr()+"/v1/opamp"),
		"the supervisor reaches the replicas through their Service")

	// The collector runs the config, with the own-metrics offer applied (which restarts it once), and
	// data flows: the state the kill must not disturb.
	g.Eventually(func(g Gomega) {
		mc := getMC(g, ns, name)
		g.Expect(mc.Status.Counts.Connected).To(Equal(int32(1)))
		g.Expect(mc.Status.Counts.ConfigApplied).To(Equal(int32(1)))
		g.Expect(cond(mc, v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue), cond(mc, v1alpha1.ConditionReady).Message)
		g.Expect(reasons(g, ns, name)).To(ContainElements(v1alpha1.EventRegistered, v1alpha1.EventConfigApplied, v1alpha1.EventOwnMetricsOffered))
		effective, err := os.ReadFile(filepath.Join(node.StorageDir(), "effective.yaml"))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(string(effective)).To(ContainSubstring("/v1/metrics"))
	}, timeout, interval).Should(Succeed())
	g.Eventually(func() error { return otlptest.SendSpan(port) }, timeout, interval).Should(Succeed())
	g.Eventually(out.Traces, timeout, interval).Should(BeNumerically(">=", 1))

	// The supervisor, the proxy's first client, went to its first backend: the leader.
	victim, survivor := rs.managers[0], rs.managers[1]
	g.Eventually(func() []int { return []int{connections(victim), connections(survivor)} }, timeout, interval).
		Should(Equal([]int{1, 0}), "linkmesh_opamp_connections of %s and %s: the supervisor's WebSocket is on the first", victim.Name, survivor.Name)
	g.Expect(leads(victim)).To(BeTrue(), "%s leads", victim.Name)

	// lastSeen has a resolution of a second in the API: kill once the second of the collector's last
	// report is over, so that a lastSeen at or after the kill's second is a report made after the kill.
	g.Eventually(func(g Gomega) {
		a := getMC(g, ns, name).Status.Agents
		g.Expect(a).To(HaveLen(1))
		g.Expect(a[0].LastSeen).NotTo(BeNil())
		g.Expect(time.Now().Truncate(time.Second).After(a[0].LastSeen.Time)).To(BeTrue())
	}, timeout, 10*time.Millisecond).Should(Succeed())
	before := getMC(g, ns, name)
	agent := before.Status.Agents[0]
	g.Expect(agent.ConfigHash).To(Equal(sha(cfg)))
	collector := collectorPid(t, dir)
	g.Expect(collector).NotTo(BeZero(), "the supervisor's collector runs")
	files := snapshot(t, node.StorageDir())
	events := reasonCounts(g, ns, name)
	most := mostShown(t, ns, name)

	kill := time.Now()
	rs.kill(victim)
	g.Eventually(func() int { return connections(survivor) }, timeout, interval).Should(Equal(1), "the supervisor reconnects to %s", survivor.Name)
	t.Logf("MEASURE kill -9 of the supervisor's replica, the leader -> supervisor reconnected to the survivor: %v", time.Since(kill))
	g.Eventually(func() bool { return leads(survivor) }, timeout, interval).Should(BeTrue(), "the survivor takes the lead")
	t.Logf("MEASURE kill -9 of the leader -> the survivor leads: %v", time.Since(kill))

	// Status as a user reads it: the same collector, once, connected and seen since the kill (so this is
	// the survivor's report, not what the dead replica last wrote), running the same config, Ready.
	expectRight := func(g Gomega) {
		mc := getMC(g, ns, name)
		st := mc.Status
		g.Expect(st.ConfigHash).To(Equal(sha(cfg)))
		g.Expect(st.Counts).To(Equal(before.Status.Counts), "the counts are those before the kill")
		g.Expect(st.Counts.Connected).To(Equal(int32(1)))
		g.Expect(st.Agents).To(HaveLen(1), "the collector is listed once")
		a := st.Agents[0]
		g.Expect(a.InstanceUID).To(Equal(agent.InstanceUID))
		g.Expect(a.PodName).To(Equal(agent.PodName))
		g.Expect(a.Connected).To(BeTrue())
		g.Expect(a.Healthy).To(BeTrue())
		g.Expect(a.ConfigHash).To(Equal(sha(cfg)))
		g.Expect(a.ConfigStatus).To(Equal(v1alpha1.ConfigStatusApplied))
		g.Expect(a.LastSeen).NotTo(BeNil())
		g.Expect(a.LastSeen.Time).To(BeTemporally(">=", kill.Truncate(time.Second)))
		g.Expect(cond(mc, v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue), cond(mc, v1alpha1.ConditionReady).Message)
		g.Expect(cond(mc, v1alpha1.ConditionConfigApplied).Status).To(Equal(metav1.ConditionTrue))
	}
	g.Eventually(expectRight, timeout, interval).Should(Succeed())
	t.Logf("MEASURE kill -9 of the supervisor's replica, the leader -> status right again: %v", time.Since(kill))
	g.Eventually(func(g Gomega) {
		g.Expect(eventsOf(g, ns, name)).To(ContainElement(And(
			HaveField("Reason", v1alpha1.EventReconnected),
			HaveField("Type", corev1.EventTypeNormal),
			HaveField("Note", ContainSubstring(agent.PodName)),
		)))
	}, timeout, interval).Should(Succeed())
	// For longer than a replica's Lease (replica.DefaultLeaseDuration, 10 s): status stays right, and no
	// other Event comes.
	g.Consistently(expectRight, 12*time.Second, 250*time.Millisecond).Should(Succeed())
	shown := most()
	g.Expect(shown).To(Equal([2]int32{1, 1}), "status never showed the collector twice (most connected, most listed) during the failover")
	after := reasonCounts(g, ns, name)
	t.Logf("Events before the kill %v, after %v", events, after)
	events[v1alpha1.EventReconnected]++
	g.Expect(after).To(Equal(events), "one Reconnected Event more, and nothing else: no second Registered, ConfigApplied or OwnMetricsOffered")

	// The collector was neither restarted nor pushed a config: the same process, the same files.
	g.Expect(collectorPid(t, dir)).To(Equal(collector), "the collector process was not restarted")
	g.Expect(proc.Exited()).NotTo(BeClosed(), "the supervisor runs")
	g.Expect(snapshot(t, node.StorageDir())).To(Equal(files), "the survivor pushed the collector nothing: the supervisor received no remote config and composed no new config")
	sent := out.Traces()
	g.Expect(otlptest.SendSpan(port)).To(Succeed(), "the pipeline kept running")
	g.Eventually(out.Traces, timeout, interval).Should(BeNumerically(">", sent))
	t.Logf("kubectl get mc -o wide:\n%s", getWide(t, ns, "managedcollectors"))
}

// replicaSet is two replicas of the manager binary behind the proxy that plays their Service.
type replicaSet struct {
	managers []*manager.Manager
	proxy    *tcpproxy.Proxy
	mu       sync.Mutex
	killed   map[*manager.Manager]bool
}

// startReplicas starts two replicas with --leader-elect, their Leases in operatorNS, and tells collectors
// the proxy's address. The first starts alone, so it leads, and is the proxy's first backend. Everything is
// stopped when the test ends.
func startReplicas(t *testing.T, operatorNS string) *replicaSet {
	t.Helper()
	bin := managerBinary(t)
	// The replicas' logs, kept when the test fails.
	dir, err := os.MkdirTemp("", "linkmesh-e2e-replicas-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the replicas' logs are in %s", dir)
			return
		}
		_ = os.RemoveAll(dir)
	})
	kubeconfig := filepath.Join(dir, "operator.kubeconfig")
	if err := env.WriteKubeconfig(kubeconfig, "linkmesh-operator"); err != nil {
		t.Fatal(err)
	}
	var ports []manager.Ports
	for range 2 {
		p, err := manager.NewPorts(false)
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, p)
	}
	proxy, err := tcpproxy.New(ports[0].OpAMP, ports[1].OpAMP)
	if err != nil {
		t.Fatal(err)
	}
	rs := &replicaSet{proxy: proxy, killed: map[*manager.Manager]bool{}}
	t.Cleanup(func() {
		rs.stop(t)
		if err := proxy.Close(); err != nil {
			t.Errorf("closing the proxy: %v", err)
		}
	})
	for i, p := range ports {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		m, err := manager.Start(ctx, manager.Options{
			Binary: bin, Name: fmt.Sprintf("replica-%d", i), Dir: dir, Kubeconfig: kubeconfig, Ports: p,
			Args: []string{"--leader-elect", "--leader-election-namespace=" + operatorNS,
				// After manager.Launch's own, which names the replica's own address.
				"--external-url=http://" + proxy.Addr()},
		})
		cancel()
		if err != nil {
			t.Fatalf("starting replica %d: %v", i, err)
		}
		rs.managers = append(rs.managers, m)
		if i == 0 {
			NewWithT(t).Eventually(func() bool { return leads(m) }, timeout, interval).Should(BeTrue(), "the first replica is elected")
		}
	}
	g := NewWithT(t)
	g.Consistently(func() bool { return leads(rs.managers[1]) }, time.Second, interval).Should(BeFalse(), "one leader")
	return rs
}

// kill kills the replica with SIGKILL, as a node failure or the OOM killer does.
func (rs *replicaSet) kill(m *manager.Manager) {
	rs.mu.Lock()
	rs.killed[m] = true
	rs.mu.Unlock()
	m.Kill()
}

// stop stops the replicas still running with SIGTERM, at once, and quotes their logs if the test failed.
func (rs *replicaSet) stop(t *testing.T) {
	var wg sync.WaitGroup
	for _, m := range rs.managers {
		wg.Go(func() {
			if err := m.Stop(); err != nil {
				t.Errorf("stopping %s: %v", m.Name, err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		for _, m := range rs.managers {
			rs.mu.Lock()
			killed := rs.killed[m]
			rs.mu.Unlock()
			t.Logf("%s (killed: %v, log %s) ended:\n%s", m.Name, killed, m.Log, m.Tail())
		}
	}
}

// leads says whether the replica's leader_election_master_status is 1.
func leads(m *manager.Manager) bool {
	families, err := m.Metrics(context.Background())
	return err == nil && slices.Contains(manager.Gauges(families, "leader_election_master_status", nil), 1)
}

// connections is the replica's linkmesh_opamp_connections, -1 when its metrics cannot be read.
func connections(m *manager.Manager) int {
	families, err := m.Metrics(context.Background())
	if err != nil {
		return -1
	}
	v := manager.Gauges(families, "linkmesh_opamp_connections", nil)
	if len(v) != 1 {
		return -1
	}
	return int(v[0])
}

// scratchNamespace is a namespace for this test alone, deleted when it ends. envtest runs no namespace
// controller, so what is left in it stays, Terminating: the test deletes its own objects first.
func scratchNamespace(t *testing.T, prefix string) string {
	t.Helper()
	ns := testenv.Namespace(t, env.Client, prefix)
	t.Cleanup(func() {
		err := env.Client.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting the namespace %s: %v", ns, err)
		}
	})
	return ns
}

// deleteCollector deletes the ManagedCollector, so that the suite's operator, back after this test, finds
// nothing of it to reconcile.
func deleteCollector(t *testing.T, ns, name string) {
	t.Helper()
	err := env.Client.Delete(context.Background(), &v1alpha1.ManagedCollector{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("deleting the ManagedCollector %s/%s: %v", ns, name, err)
	}
}

// reasons are the reasons of the ManagedCollector's Events.
func reasons(g Gomega, ns, name string) []string {
	var out []string
	for _, e := range eventsOf(g, ns, name) {
		out = append(out, e.Reason)
	}
	return out
}

// reasonCounts counts the ManagedCollector's Events by reason, a recurring one (a series) once per
// occurrence.
func reasonCounts(g Gomega, ns, name string) map[string]int {
	out := map[string]int{}
	for _, e := range eventsOf(g, ns, name) {
		n := 1
		if e.Series != nil {
			n = int(e.Series.Count)
		}
		out[e.Reason] += n
	}
	return out
}

// mostShown follows the ManagedCollector's status until the returned function is called, which returns
// the most collectors it showed connected and listed: more than there are is one counted twice.
func mostShown(t *testing.T, ns, name string) func() [2]int32 {
	t.Helper()
	var connected, listed atomic.Int32
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			mc := &v1alpha1.ManagedCollector{}
			if err := env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, mc); err == nil {
				connected.Store(max(connected.Load(), mc.Status.Counts.Connected))
				listed.Store(max(listed.Load(), int32(len(mc.Status.Agents))))
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	finish := func() [2]int32 {
		once.Do(func() {
			close(stop)
			<-done
		})
		return [2]int32{connected.Load(), listed.Load()}
	}
	t.Cleanup(func() { finish() })
	return finish
}

// stateFile is a file of the supervisor's storage directory: the hash of what it holds (effective.yaml
// carries the own-metrics bearer, which no failure message may print) and when it was last written.
type stateFile struct {
	SHA256  string
	ModTime time.Time
}

// snapshot reads the supervisor files that any push would rewrite: the last remote config it received
// (written on every remote config message, even an unchanged one) and the config it composed for the
// collector.
func snapshot(t *testing.T, storage string) map[string]stateFile {
	t.Helper()
	out := map[string]stateFile{}
	for _, f := range []string{"last_recv_remote_config.dat", "effective.yaml"} {
		path := filepath.Join(storage, f)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		out[f] = stateFile{SHA256: sha(string(b)), ModTime: st.ModTime()}
	}
	return out
}
