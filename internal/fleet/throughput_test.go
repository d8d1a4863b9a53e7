package fleet

import (
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/credential"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func point(v float64, start, at time.Duration) Sample {
	s := Sample{Value: v, Time: t0.Add(at)}
	if start >= 0 {
		s.Start = t0.Add(start)
	}
	return s
}

func TestSeriesRate(t *testing.T) {
	type step struct {
		p       Sample
		rated   bool
		rate    float64
		changed bool
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"first point is rated from its start time", []step{
			{p: point(120, 0, 60*time.Second), rated: true, rate: 2, changed: true},
		}},
		{"first point without a start time is only a baseline", []step{
			{p: point(100, -1, 60*time.Second)},
		}},
		{"first point of a long-running collector is only a baseline", []step{
			{p: point(100, 0, MaxGap+time.Second)},
		}},
		{"steady counter", []step{
			{p: point(100, 0, 60*time.Second), rated: true, rate: 100.0 / 60, changed: true},
			{p: point(700, 0, 120*time.Second), rated: true, rate: 10, changed: true},
			{p: point(1300, 0, 180*time.Second), rated: true, rate: 10},
		}},
		{"duplicate export is ignored", []step{
			{p: point(100, 0, 60*time.Second), rated: true, rate: 100.0 / 60, changed: true},
			{p: point(700, 0, 120*time.Second), rated: true, rate: 10, changed: true},
			{p: point(700, 0, 120*time.Second), rated: true, rate: 10},
		}},
		{"out-of-order export is ignored", []step{
			{p: point(100, 0, 60*time.Second), rated: true, rate: 100.0 / 60, changed: true},
			{p: point(700, 0, 120*time.Second), rated: true, rate: 10, changed: true},
			{p: point(400, 0, 90*time.Second), rated: true, rate: 10},
			{p: point(1300, 0, 180*time.Second), rated: true, rate: 10},
		}},
		{"restart with a known start time counts from the start", []step{
			{p: point(1000, 0, 60*time.Second), rated: true, rate: 1000.0 / 60, changed: true},
			{p: point(2200, 0, 120*time.Second), rated: true, rate: 20, changed: true},
			// Restarted at 130 s; 300 items in the 50 s since.
			{p: point(300, 130*time.Second, 180*time.Second), rated: true, rate: 6, changed: true},
			{p: point(900, 130*time.Second, 240*time.Second), rated: true, rate: 10, changed: true},
		}},
		{"restart without a start time starts a new baseline", []step{
			{p: point(1000, -1, 60*time.Second)},
			{p: point(2200, -1, 120*time.Second), rated: true, rate: 20, changed: true},
			{p: point(50, -1, 180*time.Second), changed: true},
			{p: point(650, -1, 240*time.Second), rated: true, rate: 10, changed: true},
		}},
		{"restart with a higher value is noticed by its start time", []step{
			{p: point(100, 0, 60*time.Second), rated: true, rate: 100.0 / 60, changed: true},
			{p: point(160, 0, 120*time.Second), rated: true, rate: 1, changed: true},
			{p: point(500, 170*time.Second, 180*time.Second), rated: true, rate: 50, changed: true},
		}},
		{"a gap longer than MaxGap rates nothing", []step{
			{p: point(100, 0, 60*time.Second), rated: true, rate: 100.0 / 60, changed: true},
			{p: point(700, 0, 120*time.Second), rated: true, rate: 10, changed: true},
			{p: point(9700, 0, 120*time.Second+MaxGap+time.Second), changed: true},
			{p: point(10300, 0, 180*time.Second+MaxGap+time.Second), rated: true, rate: 10, changed: true},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			var s series
			for i, st := range c.steps {
				changed := s.observe(st.p)
				g.Expect(s.rated).To(Equal(st.rated), "step %d rated", i)
				g.Expect(s.rate).To(BeNumerically("~", st.rate, 1e-9), "step %d rate", i)
				g.Expect(changed).To(Equal(st.changed), "step %d changed", i)
			}
		})
	}
}

func spans(kind v1alpha1.ComponentKind, comp string, outcome Outcome, v float64, at time.Duration) Sample {
	return Sample{Kind: kind, Component: comp, Signal: v1alpha1.SignalSpans, Outcome: outcome, Value: v,
		Start: t0, Time: t0.Add(at)}
}

func TestThroughputAggregatesPerGroup(t *testing.T) {
	g := NewWithT(t)
	r, clk := newTestRegistry(t)
	r.SetDesired(group1, Desired{Revision: Revision{Config: "x", Hash: "h"}, OwnMetrics: true})
	pod := credential.Membership{Collector: group1, Source: credential.SourcePod}
	for i := 1; i <= 2; i++ {
		r.Observe(uid(i), pod, full("a"), &fakeLink{})
	}
	export := func(i int, accepted, grpc, sent, failed float64, at time.Duration) {
		g.Expect(r.RecordOwnMetrics(pod, uid(i), []Sample{
			// One point per transport: the intake sums them.
			spans(v1alpha1.ComponentReceiver, "otlp", OutcomeAccepted, accepted, at),
			spans(v1alpha1.ComponentReceiver, "otlp", OutcomeAccepted, grpc, at),
			spans(v1alpha1.ComponentExporter, "debug", OutcomeSent, sent, at),
			spans(v1alpha1.ComponentExporter, "debug", OutcomeFailed, failed, at),
			{Kind: v1alpha1.ComponentExporter, Component: "debug", Signal: v1alpha1.SignalSpans, Outcome: OutcomeQueueSize, Value: 3, Time: t0.Add(at)},
			{Kind: v1alpha1.ComponentExporter, Component: "debug", Signal: v1alpha1.SignalSpans, Outcome: OutcomeQueueCapacity, Value: 1000, Time: t0.Add(at)},
		})).To(Succeed())
	}
	export(1, 0, 0, 0, 0, 60*time.Second)
	export(2, 0, 0, 0, 0, 60*time.Second)
	g.Expect(r.Snapshot(group1, "h").Throughput.Spans.Accepted.String()).To(Equal("0"), "the first export is rated from the start time")

	clk.Step(60 * time.Second)
	export(1, 600, 600, 1140, 60, 120*time.Second) // 20/s accepted, 19/s sent, 1/s failed
	export(2, 300, 0, 300, 0, 120*time.Second)     // 5/s
	th := r.Snapshot(group1, "h").Throughput
	g.Expect(th).NotTo(BeNil())
	g.Expect(th.Reporting).To(BeEquivalentTo(2))
	g.Expect(th.LastUpdated.Time).To(Equal(clk.Now().Truncate(time.Second)))
	g.Expect(th.Spans.Accepted.String()).To(Equal("25"))
	g.Expect(th.Spans.Sent.String()).To(Equal("24"))
	g.Expect(th.Spans.Failed.String()).To(Equal("1"))
	g.Expect(th.Spans.Refused).To(BeNil())
	g.Expect(th.MetricPoints).To(BeNil())
	g.Expect(th.Components).To(HaveLen(2))
	// Both total 25/s; on a tie receivers come first.
	g.Expect(th.Components[0].Kind).To(Equal(v1alpha1.ComponentReceiver))
	g.Expect(th.Components[0].Name).To(Equal("otlp"))
	g.Expect(th.Components[0].Rate.String()).To(Equal("25"))
	g.Expect(th.Components[0].QueueSize).To(BeNil())
	g.Expect(th.Components[1].Kind).To(Equal(v1alpha1.ComponentExporter))
	g.Expect(th.Components[1].Name).To(Equal("debug"))
	g.Expect(th.Components[1].Rate.String()).To(Equal("24"))
	g.Expect(th.Components[1].ErrorRate.String()).To(Equal("1"))
	g.Expect(*th.Components[1].QueueSize).To(BeEquivalentTo(6))
	g.Expect(*th.Components[1].QueueCapacity).To(BeEquivalentTo(2000))

	// A disconnected agent drops out; a silent one after StaleAfter.
	r.Disconnect(uid(2), nil)
	g.Expect(r.Snapshot(group1, "h").Throughput.Spans.Accepted.String()).To(Equal("25"), "uid 2 was not disconnected: its link differs")
	clk.Step(StaleAfter + time.Second)
	g.Expect(r.Snapshot(group1, "h").Throughput).To(BeNil())
	g.Expect(r.Throughputs()).To(BeEmpty())
	// Still connected but silent on /v1/metrics: the sweep forgets its rates (and signals the group).
	rep := full("a")
	rep.SequenceNum = 2
	r.Observe(uid(1), pod, rep, r.agents[uid(1)].link)
	r.Sweep()
	r.mu.Lock()
	g.Expect(r.agents[uid(1)].connected).To(BeTrue())
	g.Expect(r.agents[uid(1)].own).To(BeNil())
	r.mu.Unlock()
}

func TestRecordOwnMetricsIsScopedToTheCredential(t *testing.T) {
	g := NewWithT(t)
	r, _ := newTestRegistry(t)
	other := types.NamespacedName{Namespace: "ns", Name: "other"}
	pod := credential.Membership{Collector: group1, Source: credential.SourcePod}
	hostA := credential.Membership{Collector: group1, Source: credential.SourceHost, Token: types.NamespacedName{Namespace: "ns", Name: "a"}}
	hostB := credential.Membership{Collector: group1, Source: credential.SourceHost, Token: types.NamespacedName{Namespace: "ns", Name: "b"}}
	r.Observe(uid(1), pod, full("pod"), &fakeLink{})
	r.Observe(uid(2), hostA, full("host-a"), &fakeLink{})

	g.Expect(r.RecordOwnMetrics(pod, uid(1), nil)).To(Succeed())
	g.Expect(r.RecordOwnMetrics(hostA, uid(2), nil)).To(Succeed())
	g.Expect(r.RecordOwnMetrics(credential.Membership{Collector: other, Source: credential.SourcePod}, uid(1), nil)).To(MatchError(ErrNotMember), "another group's token")
	g.Expect(r.RecordOwnMetrics(pod, uid(2), nil)).To(MatchError(ErrNotMember), "the pods' token for a host")
	g.Expect(r.RecordOwnMetrics(hostB, uid(2), nil)).To(MatchError(ErrNotMember), "another host's token")
	g.Expect(r.RecordOwnMetrics(hostA, uid(1), nil)).To(MatchError(ErrNotMember), "a host's token for a pod")
	g.Expect(r.RecordOwnMetrics(pod, uid(9), nil)).To(MatchError(ErrNotMember), "an unknown instance")
}

func TestOfferOwnMetricsOncePerConnection(t *testing.T) {
	g := NewWithT(t)
	r, _ := newTestRegistry(t)
	const capBit = 0x20
	pod := credential.Membership{Collector: group1, Source: credential.SourcePod}
	rep := full("a")
	rep.Capabilities = 1 | capBit
	link := &fakeLink{}

	r.Observe(uid(1), pod, rep, link)
	g.Expect(r.OfferOwnMetrics(uid(1), link, capBit)).To(Equal(OwnMetricsNone), "no desired state yet")
	r.SetDesired(group1, Desired{Revision: Revision{Config: "x", Hash: "h"}, OwnMetrics: false})
	g.Expect(r.OfferOwnMetrics(uid(1), link, capBit)).To(Equal(OwnMetricsWithdraw), "ownMetrics=false takes back a persisted offer")
	g.Expect(r.OfferOwnMetrics(uid(1), link, capBit)).To(Equal(OwnMetricsNone), "once")
	g.Expect(r.RecordOwnMetrics(pod, uid(1), nil)).To(MatchError(ErrOwnMetricsDisabled))

	r.SetDesired(group1, Desired{Revision: Revision{Config: "x", Hash: "h"}, OwnMetrics: true})
	g.Expect(r.OfferOwnMetrics(uid(1), &fakeLink{}, capBit)).To(Equal(OwnMetricsNone), "not the agent's connection")
	g.Expect(r.OfferOwnMetrics(uid(1), link, 0x40)).To(Equal(OwnMetricsNone), "without the capability")
	g.Expect(r.OfferOwnMetrics(uid(1), link, capBit)).To(Equal(OwnMetricsOffer), "turned on")
	g.Expect(r.OfferOwnMetrics(uid(1), link, capBit)).To(Equal(OwnMetricsNone), "once per connection")
	g.Expect(r.RecordOwnMetrics(pod, uid(1), nil)).To(Succeed())

	events := r.DrainEvents(group1)
	g.Expect(events).To(ContainElement(HaveField("Reason", v1alpha1.EventOwnMetricsOffered)))

	// A new connection is offered again.
	link2 := &fakeLink{}
	rep.SequenceNum = 2
	r.Observe(uid(1), pod, rep, link2)
	g.Expect(r.OfferOwnMetrics(uid(1), link2, capBit)).To(Equal(OwnMetricsOffer))
}

func TestComponentsAreBounded(t *testing.T) {
	g := NewWithT(t)
	r, _ := newTestRegistry(t)
	pod := credential.Membership{Collector: group1, Source: credential.SourcePod}
	r.Observe(uid(1), pod, full("a"), &fakeLink{})
	var samples []Sample
	for i := 0; i < 30; i++ {
		// otlp/07 gets 7*60 items in 60 s: 7/s.
		samples = append(samples, spans(v1alpha1.ComponentReceiver, fmt.Sprintf("otlp/%02d", i), OutcomeAccepted, float64(i*60), 60*time.Second))
	}
	g.Expect(r.RecordOwnMetrics(pod, uid(1), samples)).To(Succeed())
	th := r.Snapshot(group1, "").Throughput
	g.Expect(th.Components).To(HaveLen(v1alpha1.MaxComponentsInStatus))
	g.Expect(th.Components[0].Name).To(Equal("otlp/29"), "busiest first")
	g.Expect(th.Components[19].Name).To(Equal("otlp/10"))
	g.Expect(th.Spans.Accepted.String()).To(Equal("435"), "the totals cover every component: 0+1+...+29")
}
