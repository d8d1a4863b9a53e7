package loadgen_test

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"testing"
	"time"

	. "github.com/onsi/gomega"

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

	// A second fleet with the same indexes fails the same agents.
	other := startFleet(t, loadgen.Options{
		Servers: []string{srv.Addr()}, Tokens: []string{"t"}, Count: n, Prefix: "again",
		Fail: loadgen.FailRule{Hash: hash(configB), Fraction: 0.5},
	})
	g.Eventually(func() int { return other.Progress().Failed[hash(configB)] }).WithTimeout(20 * time.Second).Should(Equal(failed))
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
	err := loadgen.Options{Count: 2, Tokens: []string{"a", "b", "c"}, Fail: loadgen.FailRule{Fraction: 2}}.Validate()
	g.Expect(err).To(MatchError(ContainSubstring("no server address")))
	g.Expect(err).To(MatchError(ContainSubstring("3 tokens for 2 agents")))
	g.Expect(err).To(MatchError(ContainSubstring("fail fraction 2 is not between 0 and 1")))
}
