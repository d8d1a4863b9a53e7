//go:build replicas

package replicas

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
	"github.com/linkmesh/linkmesh-operator/test/framework/manager"
	"github.com/linkmesh/linkmesh-operator/test/framework/simagent"
	"github.com/linkmesh/linkmesh-operator/test/framework/testenv"
)

const (
	// timeout is how long an Eventually waits: generous, as the machine is shared; timings are logged.
	timeout  = 90 * time.Second
	interval = 100 * time.Millisecond
)

const (
	configA = `receivers: {otlp: {protocols: {grpc: {endpoint: 0.0.0.0:4317}}}}
exporters: {debug: {}}
service: {pipelines: {traces: {receivers: [otlp], exporters: [debug]}}}
`
	configB = `receivers: {otlp: {protocols: {grpc: {endpoint: 0.0.0.0:4317}}}}
exporters: {debug: {verbosity: basic}}
service: {pipelines: {traces: {receivers: [otlp], exporters: [debug]}}}
`
)

// hash is the config hash the operator sends with a config and shows in status.
func hash(config string) string {
	sum := sha256.Sum256([]byte(config))
	return hex.EncodeToString(sum[:])
}

// measure logs a timing worth noting; no test asserts one.
func measure(t *testing.T, what string, d time.Duration) {
	t.Helper()
	t.Logf("MEASURE %s: %.2f s", what, d.Seconds())
}

// replica is one running manager process.
type replica struct {
	*manager.Manager
	index int
	dead  atomic.Bool
}

// Addr is the replica's OpAMP address.
func (r *replica) Addr() string { return r.Ports.OpAMP }

// cluster is one test's replicas, and the namespace of their Leases (the operator's namespace).
type cluster struct {
	t          *testing.T
	operatorNS string
	dir        string
	replicas   []*replica
}

// startReplicas starts n replicas with --leader-elect. The first starts alone and is the leader once the
// others start, so a test knows which replica it kills; leader() checks it.
func startReplicas(t *testing.T, n int, args ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, operatorNS: testenv.Namespace(t, env.Client, "operator")}
	c.dir = filepath.Join(workDir, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.stopAll)
	c.start(0, args)
	NewWithT(t).Eventually(c.leader, timeout, interval).Should(Equal(c.replicas[0]), "the first replica is elected")
	var wg sync.WaitGroup
	rest := make([]*replica, n-1)
	errs := make([]error, n-1)
	for i := 1; i < n; i++ {
		wg.Go(func() { rest[i-1], errs[i-1] = c.launch(i, args) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("starting replica %d: %v", i+1, err)
		}
		c.replicas = append(c.replicas, rest[i])
	}
	return c
}

func (c *cluster) start(i int, args []string) {
	c.t.Helper()
	r, err := c.launch(i, args)
	if err != nil {
		c.t.Fatalf("starting replica %d: %v", i, err)
	}
	c.replicas = append(c.replicas, r)
}

func (c *cluster) launch(i int, args []string) (*replica, error) {
	ports, err := manager.NewPorts(false)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m, err := manager.Start(ctx, manager.Options{
		Binary: managerBin, Name: fmt.Sprintf("replica-%d", i), Dir: c.dir, Kubeconfig: kubeconfig, Ports: ports,
		Args: append([]string{"--leader-elect", "--leader-election-namespace=" + c.operatorNS}, args...),
	})
	if err != nil {
		return nil, err
	}
	return &replica{Manager: m, index: i}, nil
}

// stopAll stops the replicas still running, with SIGTERM, and quotes their logs when the test failed.
func (c *cluster) stopAll() {
	var wg sync.WaitGroup
	for _, r := range c.replicas {
		if r.dead.Load() {
			continue
		}
		wg.Go(func() {
			if err := r.Stop(); err != nil {
				c.t.Errorf("stopping %s: %v", r.Name, err)
			}
		})
	}
	wg.Wait()
	if c.t.Failed() {
		failed.Store(true)
		for _, r := range c.replicas {
			c.t.Logf("%s (%s) ended:\n%s", r.Name, r.Log, r.Tail())
		}
	}
}

// live are the replicas not killed or stopped.
func (c *cluster) live() []*replica {
	var out []*replica
	for _, r := range c.replicas {
		if !r.dead.Load() {
			out = append(out, r)
		}
	}
	return out
}

// leader is the live replica whose leader_election_master_status is 1, nil while there is none.
func (c *cluster) leader() *replica {
	var out *replica
	for _, r := range c.live() {
		families, err := r.Metrics(context.Background())
		if err != nil {
			continue
		}
		if slices.Contains(manager.Gauges(families, "leader_election_master_status", nil), 1) {
			if out != nil {
				c.t.Errorf("%s and %s both say they lead", out.Name, r.Name)
			}
			out = r
		}
	}
	return out
}

// kill kills the replica with SIGKILL, as a node failure or the OOM killer does.
func (c *cluster) kill(r *replica) {
	r.dead.Store(true)
	r.Kill()
}

// terminate sends the replica SIGTERM, as Kubernetes does to a pod it stops; the replica drains.
func (c *cluster) terminate(r *replica) { r.Signal(syscall.SIGTERM) }

// connections is the replica's linkmesh_opamp_connections, -1 when its metrics cannot be read.
func connections(r *replica) int {
	families, err := r.Metrics(context.Background())
	if err != nil {
		return -1
	}
	v := manager.Gauges(families, "linkmesh_opamp_connections", nil)
	if len(v) != 1 {
		return -1
	}
	return int(v[0])
}

// agent is a simulated supervisor and when it connected.
type agent struct {
	*simagent.Agent
	connects    atomic.Int32
	lastConnect atomic.Int64
}

// heartbeat is the simulated supervisors' heartbeat interval: shorter than the supervisor's 30 s, so that
// what heartbeats move (an agent's lastSeen) moves within a test.
const heartbeat = 2 * time.Second

// connect starts n simulated supervisors of DaemonSet pods with the collectors' token, agent i on the
// i-th live replica (mod their number), the others as its fallbacks in order, as a Service would spread
// them and send a reconnecting one to a live pod.
func (c *cluster) connect(t *testing.T, token, prefix string, n int) []*agent {
	t.Helper()
	live := c.live()
	out := make([]*agent, n)
	for i := range n {
		a := &agent{}
		var fallback []string
		for j := 1; j < len(live); j++ {
			fallback = append(fallback, live[(i+j)%len(live)].Addr())
		}
		name := fmt.Sprintf("%s-%03d", prefix, i)
		a.Agent = simagent.Start(t, live[i%len(live)].Addr(), token, simagent.Options{
			Host:           "node-" + name,
			Attributes:     map[string]string{"k8s.pod.name": name, "k8s.node.name": "node-" + name},
			ReportApplying: true,
			Heartbeat:      heartbeat,
			Fallback:       fallback,
			OnConnect: func() {
				a.lastConnect.Store(time.Now().UnixNano())
				a.connects.Add(1)
			},
		})
		out[i] = a
	}
	return out
}

// connectsOf is how many times each agent has connected so far.
func connectsOf(agents []*agent) map[*agent]int32 {
	out := map[*agent]int32{}
	for _, a := range agents {
		out[a] = a.connects.Load()
	}
	return out
}

// reconnected are the agents that connected again since before was taken.
func reconnected(agents []*agent, before map[*agent]int32) []*agent {
	var out []*agent
	for _, a := range agents {
		if a.connects.Load() > before[a] {
			out = append(out, a)
		}
	}
	return out
}

// on are the agents whose current address is r's. An agent between two replicas has the address it tries
// next: check it has connected (reconnected) first.
func on(agents []*agent, r *replica) []*agent {
	var out []*agent
	for _, a := range agents {
		if a.Addr() == r.Addr() {
			out = append(out, a)
		}
	}
	return out
}

// lastHash is the hash of the last config the agent received, "" before any.
func lastHash(a *agent) string {
	rc := a.Received()
	if len(rc) == 0 {
		return ""
	}
	return hex.EncodeToString(rc[len(rc)-1].ConfigHash)
}

// createCollector creates a DaemonSet ManagedCollector that lets max collectors connect (envtest schedules
// no pods, the tests play them), waits until the leader accepted its config, and returns its pods' token.
func createCollector(t *testing.T, ns, name, config string, max int32) string {
	t.Helper()
	g := NewWithT(t)
	ctx := context.Background()
	g.Expect(env.Client.Create(ctx, &v1alpha1.ManagedCollector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.ManagedCollectorSpec{Mode: v1alpha1.ModeDaemonSet, Config: config, MaxCollectors: &max},
	})).To(Succeed())
	g.Eventually(func(g Gomega) {
		mc := getMC(g, ns, name)
		g.Expect(mc.Status.ConfigHash).To(Equal(hash(config)))
		g.Expect(mc.Status.ObservedGeneration).To(Equal(mc.Generation))
	}, timeout, interval).Should(Succeed())
	sec := &corev1.Secret{}
	g.Expect(env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: naming.CredentialsSecret(name)}, sec)).To(Succeed())
	token := string(sec.Data[naming.CollectorTokenKey])
	g.Expect(token).NotTo(BeEmpty())
	return token
}

func getMC(g Gomega, ns, name string) *v1alpha1.ManagedCollector {
	mc := &v1alpha1.ManagedCollector{}
	g.Expect(env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, mc)).To(Succeed())
	return mc
}

// editConfig sets spec.config.
func editConfig(t *testing.T, ns, name, config string) {
	t.Helper()
	mc := &v1alpha1.ManagedCollector{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	patch := fmt.Sprintf(`{"spec":{"config":%s}}`, strconv.Quote(config))
	if err := env.Client.Patch(context.Background(), mc, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		t.Fatal(err)
	}
}

// expectShows checks that status shows exactly agents, each once, connected, healthy and running the
// config hash: the counts equal their number, and the agent list (at most 50) names only them, once each,
// ordered as one replica orders its own (most recently seen first, as none is troubled).
func expectShows(g Gomega, mc *v1alpha1.ManagedCollector, agents []*agent, hash string) {
	n := int32(len(agents))
	st := mc.Status
	g.Expect(st.ConfigHash).To(Equal(hash))
	g.Expect(st.Counts).To(Equal(v1alpha1.AgentCounts{Connected: n, Healthy: n, ConfigApplied: n}))
	uids := map[string]bool{}
	for _, a := range agents {
		uids[a.UID.String()] = true
	}
	g.Expect(st.Agents).To(HaveLen(min(len(agents), v1alpha1.MaxAgentsInStatus)))
	listed := map[string]bool{}
	for i, s := range st.Agents {
		g.Expect(uids).To(HaveKey(s.InstanceUID), "status lists only these collectors")
		g.Expect(listed).NotTo(HaveKey(s.InstanceUID), "status lists %s twice", s.InstanceUID)
		listed[s.InstanceUID] = true
		g.Expect(s.Connected).To(BeTrue(), "%s is connected", s.PodName)
		g.Expect(s.ConfigHash).To(Equal(hash), "%s runs the config", s.PodName)
		g.Expect(s.ConfigStatus).To(Equal(v1alpha1.ConfigStatusApplied))
		if i > 0 {
			prev := st.Agents[i-1]
			g.Expect(prev.LastSeen.Time.Before(s.LastSeen.Time)).To(BeFalse(), "most recently seen first")
		}
	}
}

// waitShows waits until status shows exactly agents running hash, and returns how long it took.
func waitShows(t *testing.T, ns, name string, agents []*agent, hash string) time.Duration {
	t.Helper()
	start := time.Now()
	NewWithT(t).Eventually(func(g Gomega) {
		expectShows(g, getMC(g, ns, name), agents, hash)
	}, timeout, interval).Should(Succeed())
	return time.Since(start)
}

// mostConnected follows the ManagedCollector's status.counts.connected until the returned function is
// called, which returns the largest value seen: more than the collectors there are is a collector counted
// twice on its way from one replica to another.
func mostConnected(t *testing.T, ns, name string) func() int32 {
	t.Helper()
	var most atomic.Int32
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			mc := &v1alpha1.ManagedCollector{}
			if err := env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, mc); err == nil {
				if c := mc.Status.Counts.Connected; c > most.Load() {
					most.Store(c)
				}
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	finish := func() int32 {
		once.Do(func() {
			close(stop)
			<-done
		})
		return most.Load()
	}
	t.Cleanup(func() { finish() })
	return finish
}

// aggregated matches the note of an Event that counts several collectors.
var aggregated = regexp.MustCompile(`^(\d+) collectors, including `)

// tally is what a ManagedCollector's Events of one reason say.
type tally struct {
	// collectors is the sum of the collectors the Events name ("Collector x ..." is one).
	collectors int
	events     int
	// series counts Events that recurred: their later notes are not in the API, so their collectors are
	// not counted.
	series int
}

// eventTally reads the ManagedCollector's Events of reason whose note contains contains.
func eventTally(g Gomega, ns, name, reason, contains string) tally {
	list := &eventsv1.EventList{}
	g.Expect(env.Client.List(context.Background(), list, client.InNamespace(ns))).To(Succeed())
	var out tally
	for _, e := range list.Items {
		if e.Regarding.Kind != "ManagedCollector" || e.Regarding.Name != name || e.Reason != reason || !strings.Contains(e.Note, contains) {
			continue
		}
		out.events++
		if e.Series != nil {
			out.series++
		}
		if m := aggregated.FindStringSubmatch(e.Note); m != nil {
			n, _ := strconv.Atoi(m[1])
			out.collectors += n
		} else {
			out.collectors++
		}
	}
	return out
}

// expectEvents waits until the Events of reason name want collectors, then checks that no more arrive
// for a while: every transition is recorded once cluster-wide.
func expectEvents(t *testing.T, ns, name, reason, contains string, want int) {
	t.Helper()
	g := NewWithT(t)
	g.Eventually(func(g Gomega) {
		got := eventTally(g, ns, name, reason, contains)
		g.Expect(got.series).To(BeZero(), "no %s Event recurs as a series, whose later notes the API does not keep", reason)
		g.Expect(got.collectors).To(Equal(want), "%s Events name %d collectors", reason, want)
	}, timeout, interval).Should(Succeed())
	g.Consistently(func(g Gomega) int {
		return eventTally(g, ns, name, reason, contains).collectors
	}, 3*time.Second, 250*time.Millisecond).Should(Equal(want), "no %s Event is recorded twice", reason)
}

// expectQuiet checks that nothing is written for the ManagedCollector (status) and its shares for longer
// than a replica's Lease, while its collectors heartbeat: no write when nothing changed.
func expectQuiet(t *testing.T, ns, name string) {
	t.Helper()
	g := NewWithT(t)
	versions := func(g Gomega) []string {
		out := []string{getMC(g, ns, name).ResourceVersion}
		for _, s := range shares(g, ns) {
			out = append(out, s.Name+"@"+s.ResourceVersion)
		}
		return out
	}
	before := versions(g)
	g.Consistently(versions, 12*time.Second, 500*time.Millisecond).Should(Equal(before),
		"neither status nor a share is written while nothing changes but the collectors' heartbeats")
}

// shares are the CollectorShares in ns.
func shares(g Gomega, ns string) []v1alpha1.CollectorShare {
	list := &v1alpha1.CollectorShareList{}
	g.Expect(env.Client.List(context.Background(), list, client.InNamespace(ns))).To(Succeed())
	return list.Items
}

// replicaLeases are the replicas' own Leases (not the leader election's) in the operator's namespace.
func replicaLeases(g Gomega, ns string) []coordinationv1.Lease {
	list := &coordinationv1.LeaseList{}
	g.Expect(env.Client.List(context.Background(), list, client.InNamespace(ns),
		client.MatchingLabels{naming.LabelComponent: "replica"})).To(Succeed())
	return list.Items
}

// handshake is one WebSocket upgrade at addr with the bearer token: its HTTP status and Retry-After, or
// the error of a connection that could not be made.
func handshake(addr, token string) (int, string, error) {
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	conn, resp, err := d.Dial("ws://"+addr+"/v1/opamp", http.Header{"Authorization": {"Bearer " + token}})
	if conn != nil {
		_ = conn.Close()
	}
	if resp == nil {
		return 0, "", err
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), nil
}
