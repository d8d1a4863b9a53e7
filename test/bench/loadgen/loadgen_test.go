package loadgen_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/open-telemetry/opamp-go/protobufs"
	opamp "github.com/open-telemetry/opamp-go/server"
	opamptypes "github.com/open-telemetry/opamp-go/server/types"

	"github.com/linkmesh/linkmesh-operator/test/bench/floor"
	"github.com/linkmesh/linkmesh-operator/test/bench/loadgen"
)

const (
	configA = "receivers: {otlp: {}}\n"
	configB = "receivers: {otlp: {protocols: {grpc: {}}}}\n"
)

func hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func startFloor(t *testing.T, config string) *floor.Server {
	t.Helper()
	s, err := floor.Start("127.0.0.1:0", config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	return s
}

func startFleet(t *testing.T, o loadgen.Options) *loadgen.Fleet {
	t.Helper()
	f, err := loadgen.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Stop)
	return f
}

// TestFleetAppliesAndFailsAFraction: every agent connects, applies the first config with its hash and
// reports the effective config; of a second config, the agents the rule picks report FAILED, the rest
// APPLIED, and the same rule picks the same agents each time.
func TestFleetAppliesAndFailsAFraction(t *testing.T) {
	g := NewWithT(t)
	const n = 40
	srv := startFloor(t, configA)
	f := startFleet(t, loadgen.Options{Servers: []string{srv.Addr()}, Tokens: []string{"t"}, Count: n, Prefix: "host"})
	g.Eventually(func(g Gomega) {
		p := f.Progress()
		g.Expect(p.Connected).To(Equal(n))
		g.Expect(p.Applied).To(Equal(map[string]int{hash(configA): n}))
	}).WithTimeout(20 * time.Second).Should(Succeed())

	f.SetFail(loadgen.FailRule{Hash: hash(configB), Fraction: 0.5})
	g.Expect(srv.Push(configB)).To(Equal(n))
	var failed int
	g.Eventually(func(g Gomega) {
		p := f.Progress()
		failed = p.Failed[hash(configB)]
		g.Expect(p.Applied[hash(configB)] + failed).To(Equal(n))
	}).WithTimeout(20 * time.Second).Should(Succeed())
	// Half of 40 by a hash of the index: not all, not none.
	g.Expect(failed).To(BeNumerically(">", 5))
	g.Expect(failed).To(BeNumerically("<", n-5))
	// Every agent was offered both; those that failed the second say so.
	p := f.Progress()
	g.Expect(p.Offered).To(Equal(map[string]int{hash(configA): n, hash(configB): n}))
	g.Expect(p.EverFailed).To(Equal(map[string]int{hash(configB): failed}))

	// A second fleet with the same indexes fails the same agents.
	other := startFleet(t, loadgen.Options{
		Servers: []string{srv.Addr()}, Tokens: []string{"t"}, Count: n, Prefix: "again",
		Fail: loadgen.FailRule{Hash: hash(configB), Fraction: 0.5},
	})
	g.Eventually(func() int { return other.Progress().Failed[hash(configB)] }).WithTimeout(20 * time.Second).Should(Equal(failed))

	// Sent the first config again, every agent applies it; none forgets it failed the second.
	g.Expect(srv.Push(configA)).To(Equal(2 * n))
	g.Eventually(func(g Gomega) {
		p := f.Progress()
		g.Expect(p.Applied).To(Equal(map[string]int{hash(configA): n}))
		g.Expect(p.EverFailed).To(Equal(map[string]int{hash(configB): failed}))
	}).WithTimeout(20 * time.Second).Should(Succeed())
}

// TestFleetMovesToALiveServer: agents spread over two servers; when one stops, its agents reconnect to
// the other, which then holds all of them, and they are counted as reconnected since the mark.
func TestFleetMovesToALiveServer(t *testing.T) {
	g := NewWithT(t)
	const n = 20
	a, b := startFloor(t, configA), startFloor(t, configA)
	f := startFleet(t, loadgen.Options{Servers: []string{a.Addr(), b.Addr()}, Tokens: []string{"t"}, Count: n, Prefix: "host"})
	g.Eventually(func() []int { return []int{a.Connections(), b.Connections()} }).
		WithTimeout(20 * time.Second).Should(Equal([]int{n / 2, n / 2}))

	f.Mark()
	g.Expect(a.Stop()).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(b.Connections()).To(Equal(n))
		p := f.Progress()
		g.Expect(p.Connected).To(Equal(n))
		g.Expect(p.Reconnected).To(Equal(n / 2))
	}).WithTimeout(30 * time.Second).Should(Succeed())
}

// TestFleetMovesToAStandBy: agents spread over the first two of three servers; when one stops, its agents
// move to the third, and the other keeps its own.
func TestFleetMovesToAStandBy(t *testing.T) {
	g := NewWithT(t)
	const n = 20
	a, b, standby := startFloor(t, configA), startFloor(t, configA), startFloor(t, configA)
	f := startFleet(t, loadgen.Options{Servers: []string{a.Addr(), b.Addr(), standby.Addr()}, Spread: 2, Tokens: []string{"t"}, Count: n, Prefix: "host"})
	g.Eventually(func() []int { return []int{a.Connections(), b.Connections(), standby.Connections()} }).
		WithTimeout(20 * time.Second).Should(Equal([]int{n / 2, n / 2, 0}))

	f.Mark()
	g.Expect(b.Stop()).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect([]int{a.Connections(), standby.Connections()}).To(Equal([]int{n / 2, n / 2}))
		p := f.Progress()
		g.Expect(p.Connected).To(Equal(n))
		g.Expect(p.Reconnected).To(Equal(n / 2))
	}).WithTimeout(30 * time.Second).Should(Succeed())
}

// TestFleetTimesRoundTrips: with Probe, every connected agent's status messages are answered and timed;
// a mark starts the count afresh.
func TestFleetTimesRoundTrips(t *testing.T) {
	g := NewWithT(t)
	const n = 5
	srv := startFloor(t, configA)
	f := startFleet(t, loadgen.Options{Servers: []string{srv.Addr()}, Tokens: []string{"t"}, Count: n, Prefix: "host", Probe: 50 * time.Millisecond})
	g.Eventually(func(g Gomega) {
		p := f.Progress().Probes
		g.Expect(p.Answered).To(BeNumerically(">=", 3*n))
		g.Expect(p.Sent).To(BeNumerically(">=", p.Answered))
		var counted int64
		for _, c := range p.Buckets {
			counted += c
		}
		g.Expect(counted).To(Equal(p.Answered))
		g.Expect(p.Max).To(BeNumerically(">", 0))
		g.Expect(p.Quantile(0.5)).To(BeNumerically(">", 0))
		g.Expect(p.Quantile(0.5)).To(BeNumerically("<=", time.Duration(p.Max)))
	}).WithTimeout(20 * time.Second).Should(Succeed())
	before := f.Progress().Probes.Sent
	f.Mark()
	g.Expect(f.Progress().Probes.Sent).To(BeNumerically("<", before))
}

// refuser is an OpAMP server that answers every message with an error and closes the connection, as the
// operator does with a collector over spec.maxCollectors; it keeps the descriptions it was sent.
type refuser struct {
	addr         string
	mu           sync.Mutex
	descriptions []*protobufs.AgentDescription
}

const refusal = "this ManagedCollector already holds as many collectors as it may (spec.maxCollectors); retry later"

func startRefuser(t *testing.T) *refuser {
	t.Helper()
	r := &refuser{}
	handler, connContext, err := opamp.New(nil).Attach(opamp.Settings{Callbacks: opamptypes.Callbacks{
		OnConnecting: func(*http.Request) opamptypes.ConnectionResponse {
			return opamptypes.ConnectionResponse{Accept: true, ConnectionCallbacks: opamptypes.ConnectionCallbacks{
				OnMessage: func(ctx context.Context, conn opamptypes.Connection, msg *protobufs.AgentToServer) *protobufs.ServerToAgent {
					if d := msg.GetAgentDescription(); d != nil {
						r.mu.Lock()
						r.descriptions = append(r.descriptions, d)
						r.mu.Unlock()
					}
					_ = conn.Send(ctx, &protobufs.ServerToAgent{InstanceUid: msg.InstanceUid, ErrorResponse: &protobufs.ServerErrorResponse{
						Type: protobufs.ServerErrorResponseType_ServerErrorResponseType_Unavailable, ErrorMessage: refusal,
					}})
					_ = conn.Disconnect()
					return nil
				},
			}}
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc(floor.Path, handler)
	srv := &http.Server{Handler: mux, ConnContext: connContext, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	r.addr = ln.Addr().String()
	return r
}

// TestFleetCountsRefusals: agents that are refused say with what message; with StopOnRefusal they stop
// asking, and their descriptions are the largest the operator keeps: 64 non-identifying attributes, the
// padding ones with 256-byte keys and values.
func TestFleetCountsRefusals(t *testing.T) {
	g := NewWithT(t)
	const n = 4
	srv := startRefuser(t)
	f := startFleet(t, loadgen.Options{Servers: []string{srv.addr}, Tokens: []string{"t"}, Count: n, Prefix: "pod", Pods: true,
		MaxDescription: true, StopOnRefusal: true})
	g.Eventually(func() map[string]int { return f.Progress().Refused }).WithTimeout(20 * time.Second).Should(Equal(map[string]int{refusal: n}))
	// An agent stops from another goroutine than opamp-go's callback, so it may reconnect once meanwhile;
	// then no more.
	time.Sleep(300 * time.Millisecond)
	h := f.Progress().Handshakes
	g.Expect(h).To(BeNumerically("<=", 2*n))
	g.Consistently(func() int64 { return f.Progress().Handshakes }).WithTimeout(500 * time.Millisecond).Should(Equal(h))
	srv.mu.Lock()
	defer srv.mu.Unlock()
	g.Expect(srv.descriptions).To(HaveLen(n))
	for _, d := range srv.descriptions {
		g.Expect(d.NonIdentifyingAttributes).To(HaveLen(loadgen.MaxAttributes))
		padded := 0
		for _, kv := range d.NonIdentifyingAttributes {
			if strings.HasPrefix(kv.Key, "pad.") {
				g.Expect(kv.Key).To(HaveLen(loadgen.MaxAttributeLen))
				g.Expect(kv.GetValue().GetStringValue()).To(HaveLen(loadgen.MaxAttributeLen))
				padded++
			}
		}
		// host.name, k8s.pod.name and k8s.node.name are the others.
		g.Expect(padded).To(Equal(loadgen.MaxAttributes - 3))
	}
}

// TestRefusedAgentsReconnectAtOnce: without StopOnRefusal an agent does what opamp-go does when the server
// closes its connection after an error: it reconnects at once, and is refused again.
func TestRefusedAgentsReconnectAtOnce(t *testing.T) {
	g := NewWithT(t)
	const n = 2
	srv := startRefuser(t)
	f := startFleet(t, loadgen.Options{Servers: []string{srv.addr}, Tokens: []string{"t"}, Count: n, Prefix: "pod"})
	g.Eventually(func() int64 { return f.Progress().Refusals }).WithTimeout(20 * time.Second).Should(BeNumerically(">", 10*n))
	g.Expect(f.Progress().Refused).To(Equal(map[string]int{refusal: n}))
}

// TestUpgradeRefusalsAreCounted: an upgrade answered 503 with Retry-After, as the OpAMP server answers a
// credential whose group stays full, counts the agent refused at the upgrade; without StopOnRefusal it
// retries when Retry-After says, not at once.
func TestUpgradeRefusalsAreCounted(t *testing.T) {
	g := NewWithT(t)
	var upgrades atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		upgrades.Add(1)
		w.Header().Set("Retry-After", "2")
		http.Error(w, "full", http.StatusServiceUnavailable)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	const n = 3
	f := startFleet(t, loadgen.Options{Servers: []string{ln.Addr().String()}, Tokens: []string{"t"}, Count: n, Prefix: "pod"})
	g.Eventually(func() map[string]int { return f.Progress().Refused }).WithTimeout(20 * time.Second).
		Should(Equal(map[string]int{loadgen.RefusedAtUpgrade: n}))
	// Each agent asked once, and is counted once; the next ask waits for Retry-After's 2 s.
	g.Consistently(func() []int64 { p := f.Progress(); return []int64{upgrades.Load(), p.Refusals, p.ConnectFailures} }).
		WithTimeout(time.Second).Should(Equal([]int64{n, n, n}))
}

// TestServeProtocol: the process protocol: ready, then nothing until start, progress lines, stop.
func TestServeProtocol(t *testing.T) {
	g := NewWithT(t)
	srv := startFloor(t, configA)
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- loadgen.Serve(loadgen.Options{Servers: []string{srv.Addr()}, Tokens: []string{"t"}, Count: 3, Prefix: "h"}, inR, outW)
		_ = outW.Close()
	}()
	events := make(chan loadgen.Event, 100)
	go func() {
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			var e loadgen.Event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Errorf("event %q: %v", sc.Text(), err)
			}
			events <- e
		}
		close(events)
	}()
	g.Expect(<-events).To(Equal(loadgen.Event{Ready: true}))
	g.Consistently(srv.Connections).WithTimeout(200 * time.Millisecond).Should(Equal(0))

	_, _ = io.WriteString(inW, `{"cmd":"start"}`+"\n")
	g.Eventually(func() int {
		for {
			select {
			case e := <-events:
				if e.Progress != nil && e.Progress.Applied[hash(configA)] == 3 {
					return 3
				}
			default:
				return 0
			}
		}
	}).WithTimeout(20 * time.Second).Should(Equal(3))

	_, _ = io.WriteString(inW, `{"cmd":"stop"}`+"\n")
	g.Eventually(done).WithTimeout(20 * time.Second).Should(Receive(BeNil()))
	var last loadgen.Event
	for e := range events {
		last = e
	}
	g.Expect(last.Stopped).To(BeTrue())
	g.Eventually(srv.Connections).WithTimeout(5 * time.Second).Should(Equal(0))
}

// TestOptionsRefused: options that cannot run say why.
func TestOptionsRefused(t *testing.T) {
	g := NewWithT(t)
	err := loadgen.Options{Count: 2, Tokens: []string{"a", "b", "c"}, Fail: loadgen.FailRule{Fraction: 2}, Probe: -time.Second}.Validate()
	g.Expect(err).To(MatchError(ContainSubstring("no server address")))
	g.Expect(err).To(MatchError(ContainSubstring("3 tokens for 2 agents")))
	g.Expect(err).To(MatchError(ContainSubstring("fail fraction 2 is not between 0 and 1")))
	g.Expect(err).To(MatchError(ContainSubstring("probe interval -1s is negative")))
}
