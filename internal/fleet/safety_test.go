package fleet

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/credential"
)

func reasons(events []Event) []string {
	var out []string
	for _, e := range events {
		out = append(out, e.Reason)
	}
	return out
}

// TestGroupCapRefusesNewAgents: one credential cannot make the registry remember more agents than its group
// may hold; agents it already holds keep coming back.
func TestGroupCapRefusesNewAgents(t *testing.T) {
	g := NewWithT(t)
	r, _ := newTestRegistry(t)
	d := desired("a: 1\n")
	d.MaxAgents = 3
	r.SetDesired(group1, d)
	m := credential.Membership{Collector: group1, Source: credential.SourcePod}
	for i := range 3 {
		g.Expect(r.Observe(uid(i), m, full("ok"), &fakeLink{}).Refused).To(BeEmpty())
	}
	for i := 3; i < 13; i++ {
		reply := r.Observe(uid(i), m, full("extra"), &fakeLink{})
		g.Expect(reply.Refused).To(Equal(RefusedGroupFull))
		g.Expect(reply.Config).To(BeNil())
	}
	g.Expect(r.Snapshot(group1, d.Hash).Counts.Connected).To(Equal(int32(3)))
	// A known agent reconnects.
	r.Disconnect(uid(0), nil)
	g.Expect(r.Observe(uid(0), m, Report{SequenceNum: 2}, &fakeLink{}).Refused).To(BeEmpty())

	var full []Event
	for _, e := range r.DrainEvents(group1) {
		if e.Reason == v1alpha1.EventTooManyCollectors {
			full = append(full, e)
		}
	}
	g.Expect(full).To(HaveLen(1), "ten refusals make one Warning")
	g.Expect(full[0].Type).To(Equal("Warning"))
	g.Expect(full[0].Message).To(HavePrefix("10 collectors, including instance"))
	g.Expect(r.Snapshot(group1, d.Hash).Agents).To(HaveLen(3), "refused agents are not remembered")
}

// TestAgentsWithoutAFullStateAreForgottenQuickly: a connection that only ever sends an instance UID is not
// kept for the retention of real agents.
func TestAgentsWithoutAFullStateAreForgottenQuickly(t *testing.T) {
	g := NewWithT(t)
	r, clk := newTestRegistry(t)
	m := credential.Membership{Collector: group1, Source: credential.SourcePod}
	l := &fakeLink{}
	g.Expect(r.Observe(uid(1), m, Report{SequenceNum: 1}, l).ReportFullState).To(BeTrue())
	r.Observe(uid(2), m, full("described"), &fakeLink{})
	clk.Step(UndescribedRetention + time.Second)
	r.Sweep()
	g.Expect(l.closed.Load()).To(Equal(int32(1)), "its connection is closed")
	s := r.Snapshot(group1, "")
	g.Expect(s.Agents).To(ConsistOf(HaveField("HostName", "described")))
	// One that disconnects before describing itself is gone at once.
	r.Observe(uid(3), m, Report{SequenceNum: 1}, nil)
	r.mu.Lock()
	a := r.agents[uid(3)]
	r.mu.Unlock()
	g.Expect(a).NotTo(BeNil())
	r.Disconnect(uid(3), nil)
	r.mu.Lock()
	_, kept := r.agents[uid(3)]
	r.mu.Unlock()
	g.Expect(kept).To(BeFalse())
}

// TestInstanceUIDIsBoundToItsGroup: a credential of another group presenting a live agent's instance UID
// gets a UID of its own; the agent stays connected in its own group.
func TestInstanceUIDIsBoundToItsGroup(t *testing.T) {
	g := NewWithT(t)
	r, _ := newTestRegistry(t)
	victim := credential.Membership{Collector: group1, Source: credential.SourcePod}
	other := types.NamespacedName{Namespace: "ns-b", Name: "b"}
	attacker := credential.Membership{Collector: other, Source: credential.SourcePod}
	vl := &fakeLink{}
	r.Observe(uid(1), victim, full("victim"), vl)

	reply := r.Observe(uid(1), attacker, full("attacker"), &fakeLink{})
	g.Expect(reply.NewInstanceUID).NotTo(BeEmpty())
	g.Expect(reply.NewInstanceUID).NotTo(Equal(uid(1)))
	g.Expect(vl.closed.Load()).To(BeZero(), "the victim's connection stays")
	s := r.Snapshot(group1, "")
	g.Expect(s.Counts.Connected).To(Equal(int32(1)))
	g.Expect(s.Agents[0].HostName).To(Equal("victim"), "its record did not move")
	g.Expect(r.Snapshot(other, "").Agents).To(BeEmpty())
	g.Expect(reasons(r.DrainEvents(other))).To(ContainElement(v1alpha1.EventInstanceUIDTaken))

	// A host of the same group coming back through another of the group's tokens is the same agent.
	host := credential.Membership{Collector: group1, Source: credential.SourceHost, Token: types.NamespacedName{Namespace: "ns", Name: "t1"}}
	r.Observe(uid(2), host, full("host"), &fakeLink{})
	again := host
	again.Token.Name = "t2"
	g.Expect(r.Observe(uid(2), again, Report{SequenceNum: 2}, &fakeLink{}).NewInstanceUID).To(BeEmpty())
	// A pod credential presenting the host's UID is another kind of credential.
	g.Expect(r.Observe(uid(2), victim, Report{SequenceNum: 3}, &fakeLink{}).NewInstanceUID).NotTo(BeEmpty())
}

// TestNoUnhealthyWarningWhileAConfigIsApplied: the supervisor restarts its collector for every new config,
// and it reports unhealthy meanwhile; four pushes raise no Warning. A collector that goes down on its own
// still does, and so does one that stays unhealthy after the apply.
func TestNoUnhealthyWarningWhileAConfigIsApplied(t *testing.T) {
	g := NewWithT(t)
	r, clk := newTestRegistry(t)
	m := credential.Membership{Collector: group1, Source: credential.SourcePod}
	link := &fakeLink{}
	seq := uint64(0)
	observe := func(rep Report) Reply {
		seq++
		rep.SequenceNum = seq
		return r.Observe(uid(1), m, rep, link)
	}
	first := full("node")
	first.Health = &Health{Healthy: true}
	observe(first)
	for i := range 4 {
		d := desired(fmt.Sprintf("a: %d\n", i))
		r.SetDesired(group1, d)
		got, ok := r.Take(uid(1), link)
		g.Expect(ok).To(BeTrue())
		observe(Report{RemoteConfig: &RemoteConfigReport{Hash: got.Hash, Status: v1alpha1.ConfigStatusApplying}})
		clk.Step(100 * time.Millisecond)
		observe(Report{Health: &Health{Healthy: false, Status: "StatusStarting"}})
		clk.Step(2 * time.Second)
		r.Sweep()
		observe(Report{Health: &Health{Healthy: true, Status: "StatusOK"}})
		clk.Step(3 * time.Second)
		observe(Report{RemoteConfig: &RemoteConfigReport{Hash: got.Hash, Status: v1alpha1.ConfigStatusApplied}})
	}
	g.Expect(reasons(r.DrainEvents(group1))).NotTo(ContainElement(v1alpha1.EventUnhealthy), "four pushes, no Warning")

	// Killed by hand: the supervisor reports the collector down with an error.
	observe(Report{Health: &Health{Healthy: false, LastError: "collector process exited: signal: killed"}})
	evs := r.DrainEvents(group1)
	g.Expect(reasons(evs)).To(ContainElement(v1alpha1.EventUnhealthy))
	g.Expect(evs[len(evs)-1].Message).To(ContainSubstring("collector process exited"))

	// Unhealthy during a push, still unhealthy once it is applied: a Warning after the grace.
	observe(Report{Health: &Health{Healthy: true}})
	d := desired("b: 1\n")
	r.SetDesired(group1, d)
	got, _ := r.Take(uid(1), link)
	observe(Report{Health: &Health{Healthy: false, Status: "StatusStarting"}})
	clk.Step(2 * time.Second)
	observe(Report{RemoteConfig: &RemoteConfigReport{Hash: got.Hash, Status: v1alpha1.ConfigStatusApplied}})
	r.Sweep()
	g.Expect(reasons(r.DrainEvents(group1))).NotTo(ContainElement(v1alpha1.EventUnhealthy), "not yet")
	clk.Step(DefaultUnhealthyGrace)
	r.Sweep()
	g.Expect(reasons(r.DrainEvents(group1))).To(ContainElement(v1alpha1.EventUnhealthy), "it persists")
	r.Sweep()
	g.Expect(reasons(r.DrainEvents(group1))).NotTo(ContainElement(v1alpha1.EventUnhealthy), "once per spell")
}

// TestAggregatedEventsCountCollectors: one flapping collector is one collector, many times.
func TestAggregatedEventsCountCollectors(t *testing.T) {
	g := NewWithT(t)
	r, _ := newTestRegistry(t)
	m := credential.Membership{Collector: group1, Source: credential.SourcePod}
	first := full("flapper")
	first.Health = &Health{Healthy: true}
	r.Observe(uid(1), m, first, nil)
	for i := range 22 {
		seq := uint64(2 + 2*i)
		r.Observe(uid(1), m, Report{SequenceNum: seq, Health: &Health{Healthy: false, Status: "StatusRecoverableError"}}, nil)
		r.Observe(uid(1), m, Report{SequenceNum: seq + 1, Health: &Health{Healthy: true}}, nil)
	}
	var msgs []string
	for _, e := range r.DrainEvents(group1) {
		if e.Reason == v1alpha1.EventUnhealthy {
			msgs = append(msgs, e.Message)
		}
	}
	g.Expect(msgs).To(HaveLen(1))
	g.Expect(msgs[0]).To(HavePrefix("Collector flapper (instance " + uid(1) + ")"))
	g.Expect(msgs[0]).To(HaveSuffix("(22 times)"))
	g.Expect(strings.Contains(msgs[0], "22 collectors")).To(BeFalse())
}

// TestOwnMetricsOfferedOncePerAgent: the supervisor keeps the offer across reconnects, so the Event is
// once per collector; the offer itself is made on every connection.
func TestOwnMetricsOfferedOncePerAgent(t *testing.T) {
	g := NewWithT(t)
	r, _ := newTestRegistry(t)
	const capBit = 0x20
	pod := credential.Membership{Collector: group1, Source: credential.SourcePod}
	d := desired("a: 1\n")
	d.OwnMetrics = true
	r.SetDesired(group1, d)
	rep := full("a")
	rep.Capabilities = 1 | capBit
	offered := 0
	for i := range 3 {
		link := &fakeLink{}
		rep.SequenceNum = uint64(i + 1)
		r.Observe(uid(1), pod, rep, link)
		g.Expect(r.OfferOwnMetrics(uid(1), link, capBit)).To(Equal(OwnMetricsOffer))
		r.Disconnect(uid(1), link)
	}
	for _, e := range r.DrainEvents(group1) {
		if e.Reason == v1alpha1.EventOwnMetricsOffered {
			offered++
		}
	}
	g.Expect(offered).To(Equal(1))
}

// TestReconnectedIsNotRegistered: a collector that arrives running a config of the operator moved here
// (its replica went away, or this one restarted): it is not announced as new.
func TestReconnectedIsNotRegistered(t *testing.T) {
	g := NewWithT(t)
	r, _ := newTestRegistry(t)
	d := desired("a: 1\n")
	r.SetDesired(group1, d)
	m := credential.Membership{Collector: group1, Source: credential.SourcePod}
	for i := range 50 {
		rep := full(fmt.Sprintf("pod-%d", i))
		rep.RemoteConfig = &RemoteConfigReport{Hash: d.Hash, Status: v1alpha1.ConfigStatusApplied}
		r.Observe(uid(i), m, rep, nil)
	}
	r.Observe(uid(100), m, full("brand-new"), nil)
	evs := r.DrainEvents(group1)
	g.Expect(reasons(evs)).To(ConsistOf(v1alpha1.EventReconnected, v1alpha1.EventRegistered))
	for _, e := range evs {
		switch e.Reason {
		case v1alpha1.EventReconnected:
			g.Expect(e.Message).To(HavePrefix("50 collectors, including pod-0"))
		case v1alpha1.EventRegistered:
			g.Expect(e.Message).To(HavePrefix("Collector brand-new"))
		}
	}
}

// TestReconnectedAfterAnEmptyFirstMessage: the real supervisor reconnects with the same opamp-go client,
// whose first message on the new connection is empty; its full state comes when asked. The replica it
// lands on records one Reconnected, naming it, and neither Registered nor the ConfigApplied and
// OwnMetricsOffered of a collector seen for the first time; a new collector arriving the same way is
// Registered once.
func TestReconnectedAfterAnEmptyFirstMessage(t *testing.T) {
	g := NewWithT(t)
	r, _ := newTestRegistry(t)
	const capBit = 0x20
	d := desired("a: 1\n")
	d.OwnMetrics = true
	r.SetDesired(group1, d)
	m := credential.Membership{Collector: group1, Source: credential.SourcePod}
	arrive := func(id int, rep Report) (Reply, Reply, OwnMetricsAction) {
		link := &fakeLink{}
		first := r.Observe(uid(id), m, Report{SequenceNum: 41}, link)
		g.Expect(r.OfferOwnMetrics(uid(id), link, capBit)).To(Equal(OwnMetricsNone), "nothing is offered to an agent not described")
		rep.SequenceNum = 42
		rep.Capabilities = 1 | capBit
		return first, r.Observe(uid(id), m, rep, link), r.OfferOwnMetrics(uid(id), link, capBit)
	}

	moved := full("pod-a")
	moved.RemoteConfig = &RemoteConfigReport{Hash: d.Hash, Status: v1alpha1.ConfigStatusApplied}
	first, second, offer := arrive(1, moved)
	g.Expect(first.ReportFullState).To(BeTrue())
	g.Expect(second.Config).To(BeNil(), "it runs the config already")
	g.Expect(offer).To(Equal(OwnMetricsOffer), "the offer is made on the new connection")
	evs := r.DrainEvents(group1)
	g.Expect(reasons(evs)).To(Equal([]string{v1alpha1.EventReconnected}))
	g.Expect(evs[0].Message).To(HavePrefix("Collector pod-a (instance " + uid(1) + ")"))

	_, second, offer = arrive(2, full("brand-new"))
	g.Expect(second.Config).NotTo(BeNil())
	g.Expect(offer).To(Equal(OwnMetricsOffer))
	evs = r.DrainEvents(group1)
	g.Expect(reasons(evs)).To(Equal([]string{v1alpha1.EventRegistered, v1alpha1.EventOwnMetricsOffered}))
	g.Expect(evs[0].Message).To(HavePrefix("Collector brand-new (instance " + uid(2) + ")"))
}

// TestEffectiveConfigIsParsedOnceAndBounded: the structure of an effective config is parsed when its hash
// is new, outside the lock, and not at all beyond MaxEffectiveConfig.
func TestEffectiveConfigIsParsedOnceAndBounded(t *testing.T) {
	g := NewWithT(t)
	r, _ := newTestRegistry(t)
	d := desired(driftDesired)
	r.SetDesired(group1, d)
	m := credential.Membership{Collector: group1, Source: credential.SourcePod}
	r.Observe(uid(1), m, full("a"), &fakeLink{})
	eff, h := driftMerged, "effective-1"
	rep := Report{SequenceNum: 2, RemoteConfig: &RemoteConfigReport{Hash: d.Hash, Status: v1alpha1.ConfigStatusApplied}, EffectiveConfig: &eff, EffectiveConfigHash: &h}
	r.Observe(uid(1), m, rep, &fakeLink{})
	r.mu.Lock()
	shape := r.agents[uid(1)].drift.shape
	r.mu.Unlock()
	g.Expect(shape).NotTo(BeNil())
	g.Expect(r.parseEffective(uid(1), rep)).To(BeNil(), "the same hash is not parsed again")

	huge := driftEmpty + strings.Repeat("# padding\n", MaxEffectiveConfig/10+1)
	h2 := "effective-2"
	g.Expect(r.parseEffective(uid(1), Report{EffectiveConfig: &huge, EffectiveConfigHash: &h2})).To(BeNil(), "too large to inspect")
	small := driftEmpty
	g.Expect(r.parseEffective(uid(1), Report{EffectiveConfig: &small, EffectiveConfigHash: &h2})).NotTo(BeNil())
}

// TestCloseAllSpreadsAndIsNoDisconnect: a replica shutting down closes every connection, spread out, and
// that is no collector leaving.
func TestCloseAllSpreadsAndIsNoDisconnect(t *testing.T) {
	g := NewWithT(t)
	r := New(Options{})
	m := credential.Membership{Collector: group1, Source: credential.SourcePod}
	links := make([]*fakeLink, 100)
	for i := range links {
		links[i] = &fakeLink{}
		r.Observe(uid(i), m, full("pod"), links[i])
	}
	r.DrainEvents(group1)
	began := time.Now()
	r.CloseAll(context.Background(), 200*time.Millisecond)
	g.Expect(time.Since(began)).To(BeNumerically(">=", 150*time.Millisecond), "spread over the period")
	for _, l := range links {
		g.Expect(l.closed.Load()).To(Equal(int32(1)))
		r.Disconnect(uid(0), l)
	}
	for i, l := range links {
		r.Disconnect(uid(i), l)
	}
	g.Expect(reasons(r.DrainEvents(group1))).NotTo(ContainElement(v1alpha1.EventDisconnected))
}
