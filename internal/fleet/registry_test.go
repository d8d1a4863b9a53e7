package fleet

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/collectorconfig"
	"github.com/linkmesh/linkmesh-operator/internal/credential"
)

var group1 = types.NamespacedName{Namespace: "ns", Name: "logs"}

type fakeLink struct {
	notified atomic.Int32
	closed   atomic.Int32
}

func (l *fakeLink) Notify() { l.notified.Add(1) }
func (l *fakeLink) Close()  { l.closed.Add(1) }

func newTestRegistry(t *testing.T) (*Registry, *clocktesting.FakeClock) {
	t.Helper()
	clk := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	return New(Options{Clock: clk, IdleTimeout: 90 * time.Second, Retention: 10 * time.Minute}), clk
}

func full(host string) Report {
	return Report{
		SequenceNum:         1,
		Description:         &Description{HostName: host},
		Capabilities:        1,
		AcceptsRemoteConfig: true,
	}
}

func desired(config string) Desired {
	return Desired{Revision: Revision{Config: config, Hash: collectorconfig.Hash(config)}}
}

func uid(i int) string { return fmt.Sprintf("00000000-0000-0000-0000-%012d", i) }

func TestObservePushesDesiredOncePerConnection(t *testing.T) {
	g := NewWithT(t)
	r, _ := newTestRegistry(t)
	d := desired("receivers: {}\n")
	r.SetDesired(group1, d)
	m := credential.Membership{Collector: group1, Source: credential.SourcePod}
	link := &fakeLink{}

	reply := r.Observe(uid(1), m, full("a"), link)
	g.Expect(reply.ReportFullState).To(BeFalse())
	g.Expect(reply.Config).NotTo(BeNil())
	g.Expect(reply.Config.Hash).To(Equal(d.Hash))

	// Sent once on this connection, not again on the next heartbeat.
	reply = r.Observe(uid(1), m, Report{SequenceNum: 2}, link)
	g.Expect(reply.Config).To(BeNil())

	// A reconnect of an agent that reports the desired hash gets nothing.
	r.Observe(uid(1), m, Report{SequenceNum: 3, RemoteConfig: &RemoteConfigReport{Hash: d.Hash, Status: v1alpha1.ConfigStatusApplied}}, link)
	r.Disconnect(uid(1), link)
	link2 := &fakeLink{}
	reply = r.Observe(uid(1), m, Report{SequenceNum: 4}, link2)
	g.Expect(reply.ReportFullState).To(BeFalse())
	g.Expect(reply.Config).To(BeNil())

	// A new config is announced to the live connection and taken once.
	d2 := desired("receivers: {otlp: {}}\n")
	r.SetDesired(group1, d2)
	g.Expect(link2.notified.Load()).To(Equal(int32(1)))
	got, ok := r.Take(uid(1), link2)
	g.Expect(ok).To(BeTrue())
	g.Expect(got.Hash).To(Equal(d2.Hash))
	_, ok = r.Take(uid(1), link2)
	g.Expect(ok).To(BeFalse())
	// The old link cannot take anything.
	_, ok = r.Take(uid(1), link)
	g.Expect(ok).To(BeFalse())
}

func TestReconnectAfterFailureResendsOnlyIfHashDiffers(t *testing.T) {
	g := NewWithT(t)
	r, _ := newTestRegistry(t)
	d := desired("a: 1\n")
	r.SetDesired(group1, d)
	m := credential.Membership{Collector: group1, Source: credential.SourcePod}
	l1 := &fakeLink{}
	r.Observe(uid(1), m, full("a"), l1)
	r.Observe(uid(1), m, Report{SequenceNum: 2, RemoteConfig: &RemoteConfigReport{Hash: "other", Status: v1alpha1.ConfigStatusApplied}}, l1)
	r.Disconnect(uid(1), l1)

	reply := r.Observe(uid(1), m, Report{SequenceNum: 3}, &fakeLink{})
	g.Expect(reply.Config).NotTo(BeNil(), "the agent last reported another hash")
}

func TestUnknownInstanceAndSequenceGapGetReportFullState(t *testing.T) {
	g := NewWithT(t)
	r, _ := newTestRegistry(t)
	r.SetDesired(group1, desired("a: 1\n"))
	m := credential.Membership{Collector: group1, Source: credential.SourcePod}

	reply := r.Observe(uid(1), m, Report{SequenceNum: 7}, nil)
	g.Expect(reply.ReportFullState).To(BeTrue())
	g.Expect(reply.Config).To(BeNil(), "nothing is pushed before the agent's state is known")

	reply = r.Observe(uid(1), m, Report{SequenceNum: 8, Description: &Description{HostName: "a"}, Capabilities: 3, AcceptsRemoteConfig: true}, nil)
	g.Expect(reply.ReportFullState).To(BeFalse())
	g.Expect(reply.Config).NotTo(BeNil())

	reply = r.Observe(uid(1), m, Report{SequenceNum: 10}, nil)
	g.Expect(reply.ReportFullState).To(BeTrue(), "message 9 went elsewhere")
}

func TestSnapshotCountsAndBoundedOrder(t *testing.T) {
	g := NewWithT(t)
	r, clk := newTestRegistry(t)
	d := desired("a: 1\n")
	r.SetDesired(group1, d)
	m := credential.Membership{Collector: group1, Source: credential.SourcePod}
	const n = 120
	for i := range n {
		clk.Step(time.Second)
		rep := full(fmt.Sprintf("host-%03d", i))
		rep.Health = &Health{Healthy: true}
		rep.RemoteConfig = &RemoteConfigReport{Hash: d.Hash, Status: v1alpha1.ConfigStatusApplied}
		switch i {
		case 3:
			rep.RemoteConfig = &RemoteConfigReport{Hash: d.Hash, Status: v1alpha1.ConfigStatusFailed, Message: "bad exporter"}
		case 5:
			rep.Health = &Health{Healthy: false, LastError: "exporter down"}
		}
		r.Observe(uid(i), m, rep, &fakeLink{})
	}
	r.Disconnect(uid(7), nil) // wrong link: ignored
	s := r.Snapshot(group1, d.Hash)
	g.Expect(s.Counts).To(Equal(v1alpha1.AgentCounts{Connected: n, Healthy: n - 1, ConfigApplied: n - 1, ConfigFailed: 1}))
	g.Expect(s.Agents).To(HaveLen(v1alpha1.MaxAgentsInStatus))
	// Troubled first (most recent first among them), then the most recently seen.
	g.Expect(s.Agents[0].HostName).To(Equal("host-005"))
	g.Expect(s.Agents[0].Message).To(Equal("exporter down"))
	g.Expect(s.Agents[1].HostName).To(Equal("host-003"))
	g.Expect(s.Agents[1].ConfigStatus).To(Equal(v1alpha1.ConfigStatusFailed))
	g.Expect(s.Agents[1].Message).To(Equal("bad exporter"))
	g.Expect(s.Agents[2].HostName).To(Equal(fmt.Sprintf("host-%03d", n-1)))
	g.Expect(s.Agents[2].ManagementMode).To(Equal(v1alpha1.ManagementModeOpAMP))
	for _, a := range s.Agents {
		g.Expect(a.Connected).To(BeTrue())
		g.Expect(a.LastSeen).NotTo(BeNil())
	}

	// A config change makes the counts about the new hash.
	s = r.Snapshot(group1, collectorconfig.Hash("b: 2\n"))
	g.Expect(s.Counts.ConfigApplied).To(BeZero())
	g.Expect(s.Counts.Connected).To(Equal(int32(n)))
}

func TestEventsAreAggregated(t *testing.T) {
	g := NewWithT(t)
	r, _ := newTestRegistry(t)
	d := desired("a: 1\n")
	m := credential.Membership{Collector: group1, Source: credential.SourcePod}
	for i := range 1000 {
		// A new supervisor registers first, then reports what it made of the config it got.
		r.Observe(uid(i), m, full(fmt.Sprintf("pod-%d", i)), nil)
		rep := Report{SequenceNum: 2, RemoteConfig: &RemoteConfigReport{Hash: d.Hash, Status: v1alpha1.ConfigStatusApplied}}
		if i%2 == 1 {
			rep.RemoteConfig = &RemoteConfigReport{Hash: d.Hash, Status: v1alpha1.ConfigStatusFailed, Message: fmt.Sprintf("error %d", i%100)}
		}
		r.Observe(uid(i), m, rep, nil)
	}
	events := r.DrainEvents(group1)
	g.Expect(len(events)).To(BeNumerically("<=", maxEventKinds+5))
	byReason := map[string]int{}
	for _, e := range events {
		byReason[e.Reason]++
		g.Expect(len(e.Message)).To(BeNumerically("<", 1024))
	}
	g.Expect(byReason[v1alpha1.EventRegistered]).To(Equal(1))
	g.Expect(byReason[v1alpha1.EventConfigApplied]).To(Equal(1))
	g.Expect(events[0].Message).To(HavePrefix("1000 collectors, including pod-0"))
	var failed []string
	for _, e := range events {
		if e.Reason == v1alpha1.EventConfigFailed {
			g.Expect(e.Type).To(Equal("Warning"))
			failed = append(failed, e.Message)
		}
	}
	g.Expect(strings.Join(failed, "\n")).To(ContainSubstring("error 1"))
	g.Expect(strings.Join(failed, "\n")).To(ContainSubstring(otherDetail))

	// Drained: the next snapshot has none.
	g.Expect(r.DrainEvents(group1)).To(BeEmpty())
}

func TestSignalsAreCoalescedPerGroup(t *testing.T) {
	g := NewWithT(t)
	r, clk := newTestRegistry(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = r.Start(ctx) }()
	other := types.NamespacedName{Namespace: "ns", Name: "metrics"}

	for i := range 200 {
		r.Observe(uid(i), credential.Membership{Collector: group1, Source: credential.SourcePod}, full("x"), nil)
	}
	r.Observe(uid(1000), credential.Membership{Collector: other, Source: credential.SourcePod}, full("y"), nil)

	got := map[types.NamespacedName]int{}
	receive := func() {
		select {
		case ev := <-r.Changes():
			got[types.NamespacedName{Namespace: ev.Object.Namespace, Name: ev.Object.Name}]++
		case <-time.After(5 * time.Second):
			t.Fatal("no signal")
		}
	}
	receive()
	receive()
	g.Expect(got).To(Equal(map[types.NamespacedName]int{group1: 1, other: 1}))
	g.Expect(r.Signals()).To(Equal(uint64(2)))

	// The 199 later changes of group1 wait for the interval and ride one signal.
	g.Consistently(r.Changes(), 200*time.Millisecond).ShouldNot(Receive())
	g.Eventually(clk.HasWaiters).Should(BeTrue())
	clk.Step(time.Second)
	receive()
	g.Expect(got[group1]).To(Equal(2))
	g.Expect(r.Signals()).To(Equal(uint64(3)))
}

func TestIdleAgentsAreDisconnectedAndForgotten(t *testing.T) {
	g := NewWithT(t)
	r, clk := newTestRegistry(t)
	m := credential.Membership{Collector: group1, Source: credential.SourceHost, Token: types.NamespacedName{Namespace: "ns", Name: "t"}}
	ws := &fakeLink{}
	r.Observe(uid(1), m, full("ws"), ws)
	r.Observe(uid(2), m, full("http"), nil)
	r.DrainEvents(group1)

	clk.Step(60 * time.Second)
	r.Observe(uid(2), m, Report{SequenceNum: 2}, nil)
	clk.Step(31 * time.Second)
	r.Sweep()
	s := r.Snapshot(group1, "")
	g.Expect(s.Counts.Connected).To(Equal(int32(1)))
	g.Expect(ws.closed.Load()).To(Equal(int32(1)))
	g.Expect(r.DrainEvents(group1)).To(ConsistOf(HaveField("Reason", v1alpha1.EventDisconnected)))
	g.Expect(s.Agents).To(HaveLen(2), "a disconnected agent stays listed for a while")

	clk.Step(11 * time.Minute)
	r.Sweep()
	s = r.Snapshot(group1, "")
	g.Expect(s.Agents).To(ConsistOf(And(HaveField("HostName", "http"), HaveField("Connected", false))),
		"the first is forgotten, the second just went idle")
	clk.Step(11 * time.Minute)
	r.Sweep()
	g.Expect(r.Snapshot(group1, "").Agents).To(BeEmpty())

	// Evicting a token drops its hosts.
	r.Observe(uid(3), m, full("again"), ws)
	r.EvictToken(m.Token)
	g.Expect(r.Snapshot(group1, "").Counts.Connected).To(BeZero())
	g.Expect(ws.closed.Load()).To(Equal(int32(2)))
}

func TestForgetClosesAgents(t *testing.T) {
	g := NewWithT(t)
	r, _ := newTestRegistry(t)
	l := &fakeLink{}
	r.Observe(uid(1), credential.Membership{Collector: group1, Source: credential.SourcePod}, full("a"), l)
	r.Forget(group1)
	g.Expect(l.closed.Load()).To(Equal(int32(1)))
	g.Expect(r.Snapshot(group1, "")).To(Equal(Snapshot{}))
}

func TestSweepGoesOnWithoutAReader(t *testing.T) {
	g := NewWithT(t)
	r, clk := newTestRegistry(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = r.Start(ctx) }()
	// More groups than the Changes buffer, and nobody reads it, as on a replica that is not the leader.
	for i := range 300 {
		r.Observe(uid(i), credential.Membership{Collector: types.NamespacedName{Namespace: "ns", Name: fmt.Sprint(i)}, Source: credential.SourcePod}, full("x"), nil)
	}
	g.Eventually(clk.HasWaiters).Should(BeTrue())
	clk.Step(91 * time.Second)
	clk.Step(30 * time.Second)
	g.Eventually(func() int32 {
		return r.Snapshot(types.NamespacedName{Namespace: "ns", Name: "0"}, "").Counts.Connected
	}, 5*time.Second, 10*time.Millisecond).Should(BeZero())
}

// TestUnhealthyWarnsOnlyWhenSomethingIsWrong: the supervisor's first report, while its collector starts, is
// unhealthy with no error; that is no reason for a Warning. A healthy agent turning unhealthy is.
func TestUnhealthyWarnsOnlyWhenSomethingIsWrong(t *testing.T) {
	g := NewWithT(t)
	r, _ := newTestRegistry(t)
	d := desired("a: 1\n")
	r.SetDesired(group1, d)
	m := credential.Membership{Collector: group1, Source: credential.SourcePod}
	unhealthy := func(g Gomega) []Event {
		var out []Event
		for _, e := range r.DrainEvents(group1) {
			if e.Reason == v1alpha1.EventUnhealthy {
				out = append(out, e)
			}
		}
		return out
	}

	starting := full("a")
	starting.Health = &Health{Healthy: false, Status: "StatusStarting", Components: 2, UnhealthyComponents: []string{"extensions/extension:opamp"}}
	r.Observe(uid(1), m, starting, &fakeLink{})
	g.Expect(unhealthy(g)).To(BeEmpty(), "a starting collector is not a warning")

	r.Observe(uid(1), m, Report{SequenceNum: 2, Health: &Health{Healthy: true}}, &fakeLink{})
	g.Expect(unhealthy(g)).To(BeEmpty())

	r.Observe(uid(1), m, Report{SequenceNum: 3, Health: &Health{Healthy: false, Status: "StatusRecoverableError"}}, &fakeLink{})
	evs := unhealthy(g)
	g.Expect(evs).To(HaveLen(1), "a healthy collector turned unhealthy")
	g.Expect(evs[0].Message).To(HaveSuffix("reported unhealthy: StatusRecoverableError"))

	broken := full("b")
	broken.Health = &Health{Healthy: false, LastError: "exporter otlp_http: connection refused"}
	r.Observe(uid(2), m, broken, &fakeLink{})
	evs = unhealthy(g)
	g.Expect(evs).To(HaveLen(1), "a first report that names an error")
	g.Expect(evs[0].Message).To(HaveSuffix("reported unhealthy: exporter otlp_http: connection refused"))
}
