package fleet

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/credential"
)

func TestRankPutsCanariesFirstAndIsStable(t *testing.T) {
	g := NewWithT(t)
	g.Expect(Rank(uid(1), false)).To(Equal(Rank(uid(1), false)), "deterministic")
	g.Expect(Rank(uid(1), true)).To(BeNumerically("<", uint64(1)<<63))
	g.Expect(Rank(uid(1), false)).To(BeNumerically(">=", uint64(1)<<63))
	r, err := ParseRank(FormatRank(Rank(uid(2), false)))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(r).To(Equal(Rank(uid(2), false)))
	_, err = ParseRank("12")
	g.Expect(err).To(HaveOccurred())
}

// TestThresholdPicksTheStep: small steps exactly from the lowest ranks, large ones by the share of the
// hash space, canaries first.
func TestThresholdPicksTheStep(t *testing.T) {
	g := NewWithT(t)
	var ranks []uint64
	for i := range 1000 {
		ranks = append(ranks, Rank(uid(i), i < 100))
	}
	slices.Sort(ranks)
	inStep := func(th uint64) int {
		n := 0
		for _, r := range ranks {
			if r < th {
				n++
			}
		}
		return n
	}
	g.Expect(Threshold(0, 1000, 100, ranks[:32])).To(BeZero())
	g.Expect(Threshold(1000, 1000, 100, ranks[:32])).To(Equal(uint64(math.MaxUint64)))
	for _, target := range []int{1, 5, 32} {
		g.Expect(inStep(Threshold(target, 1000, 100, slices.Clone(ranks[:32])))).To(Equal(target), "exact for %d", target)
	}
	// 50 of the 100 canaries, roughly; all canaries before any other.
	n := inStep(Threshold(50, 1000, 100, slices.Clone(ranks[:32])))
	g.Expect(n).To(BeNumerically("~", 50, 20))
	n = inStep(Threshold(550, 1000, 100, slices.Clone(ranks[:32])))
	g.Expect(n).To(BeNumerically("~", 550, 60))
	g.Expect(n).To(BeNumerically(">=", 100), "every canary is in")
}

func rolloutDesired(threshold uint64, phase v1alpha1.RolloutPhase, stepStarted time.Time) (Desired, Revision) {
	stable := Revision{Config: "stable: 1\n", Hash: "stable-hash"}
	d := desired("next: 2\n")
	d.Canary = labels.Nothing()
	d.Rollout = &Rollout{Stable: stable, Phase: phase, Threshold: threshold, StepStarted: stepStarted, BakeTime: time.Minute}
	return d, stable
}

// TestRolloutTargets: in the steps by rank, joiners and those outside run the stable revision; collectors
// that have the new one keep it; a rollback sends everyone the stable one.
func TestRolloutTargets(t *testing.T) {
	g := NewWithT(t)
	r, clk := newTestRegistry(t)
	m := credential.Membership{Collector: group1, Source: credential.SourcePod}
	const n = 40
	for i := range n {
		r.Observe(uid(i), m, full(fmt.Sprintf("pod-%d", i)), &fakeLink{})
	}
	var ranks []uint64
	for i := range n {
		ranks = append(ranks, Rank(uid(i), false))
	}
	slices.Sort(ranks)
	start := clk.Now()
	clk.Step(time.Second)
	d, stable := rolloutDesired(Threshold(4, n, 0, slices.Clone(ranks[:32])), v1alpha1.RolloutProgressing, start)
	r.SetDesired(group1, d)
	sent := map[string]int{}
	for i := range n {
		r.mu.Lock()
		link := r.agents[uid(i)].link
		r.mu.Unlock()
		got, ok := r.Take(uid(i), link)
		g.Expect(ok).To(BeTrue())
		sent[got.Hash]++
	}
	g.Expect(sent).To(Equal(map[string]int{d.Hash: 4, stable.Hash: n - 4}))

	// A joiner ranked in the step runs the stable revision.
	joiner := -1
	for i := n; joiner < 0; i++ {
		if Rank(uid(i), false) < d.Rollout.Threshold {
			joiner = i
		}
	}
	reply := r.Observe(uid(joiner), m, full("late"), &fakeLink{})
	g.Expect(reply.Config.Hash).To(Equal(stable.Hash))
	// One that arrives running the new revision (it moved from another replica) keeps it.
	moved := full("moved")
	moved.RemoteConfig = &RemoteConfigReport{Hash: d.Hash, Status: v1alpha1.ConfigStatusApplied}
	g.Expect(r.Observe(uid(1000), m, moved, &fakeLink{}).Config).To(BeNil())

	obs := r.Snapshot(group1, d.Hash).Rollout
	g.Expect(obs.Revision).To(Equal(d.Hash))
	g.Expect(obs.Candidates).To(Equal(int32(n + 2)))
	g.Expect(obs.Offered).To(Equal(int32(5)), "the four in the step and the one that moved here")
	g.Expect(obs.LowestRanks).To(HaveLen(maxLowestRanks))

	// Rolled back: every collector is sent the stable revision, the new one never again.
	d.Rollout.Phase = v1alpha1.RolloutRolledBack
	r.SetDesired(group1, d)
	r.mu.Lock()
	for _, a := range r.agents {
		g.Expect(a.target(r.groups[group1].desired).Hash).To(Equal(stable.Hash))
	}
	r.mu.Unlock()
}

// TestRolloutFailures: a collector fails the revision when it reports it FAILED, stays unhealthy running
// it, or stays away for the bake time after it got it; a failure is counted once and sticks.
func TestRolloutFailures(t *testing.T) {
	g := NewWithT(t)
	r, clk := newTestRegistry(t)
	m := credential.Membership{Collector: group1, Source: credential.SourcePod}
	for i := range 3 {
		r.Observe(uid(i), m, full(fmt.Sprintf("pod-%d", i)), &fakeLink{})
	}
	clk.Step(time.Second)
	d, _ := rolloutDesired(math.MaxUint64, v1alpha1.RolloutProgressing, clk.Now())
	r.SetDesired(group1, d)
	report := func(i int, seq uint64, rep Report) {
		rep.SequenceNum = seq
		r.mu.Lock()
		link := r.agents[uid(i)].link
		r.mu.Unlock()
		r.Observe(uid(i), m, rep, link)
	}
	report(0, 2, Report{RemoteConfig: &RemoteConfigReport{Hash: d.Hash, Status: v1alpha1.ConfigStatusFailed, Message: "port 4317 in use"}})
	report(1, 2, Report{RemoteConfig: &RemoteConfigReport{Hash: d.Hash, Status: v1alpha1.ConfigStatusApplied}, Health: &Health{Healthy: true}})
	report(2, 2, Report{RemoteConfig: &RemoteConfigReport{Hash: d.Hash, Status: v1alpha1.ConfigStatusApplied}, Health: &Health{Healthy: true}})
	obs := r.Snapshot(group1, d.Hash).Rollout
	g.Expect(obs.Failed).To(Equal(int32(1)))
	g.Expect(obs.Updated).To(Equal(int32(2)))
	g.Expect(obs.LastFailure.Reason).To(Equal(v1alpha1.FailureConfigFailed))
	g.Expect(obs.LastFailure.Message).To(Equal("port 4317 in use"))
	g.Expect(obs.LastFailure.Collector).To(Equal("pod-0"))

	// Unhealthy running it, past the grace.
	report(1, 3, Report{Health: &Health{Healthy: false, Status: "StatusRecoverableError"}})
	clk.Step(ApplyGrace + defaultApplyTimeout + DefaultUnhealthyGrace + time.Second)
	r.Sweep()
	obs = r.Snapshot(group1, d.Hash).Rollout
	g.Expect(obs.Failed).To(Equal(int32(2)))
	g.Expect(obs.Updated).To(Equal(int32(1)))

	// Gone for the bake time after it got the revision.
	r.mu.Lock()
	link := r.agents[uid(2)].link
	r.mu.Unlock()
	r.Disconnect(uid(2), link)
	clk.Step(30 * time.Second)
	r.Sweep()
	g.Expect(r.Snapshot(group1, d.Hash).Rollout.Failed).To(Equal(int32(2)), "within the bake time")
	clk.Step(31 * time.Second)
	r.Sweep()
	obs = r.Snapshot(group1, d.Hash).Rollout
	g.Expect(obs.Failed).To(Equal(int32(3)))
	g.Expect(obs.LastFailure.Reason).To(Equal(v1alpha1.FailureDisconnected))

	// A new revision starts with a clean slate.
	d2, _ := rolloutDesired(math.MaxUint64, v1alpha1.RolloutProgressing, clk.Now())
	d2.Revision = Revision{Config: "next: 3\n", Hash: "third"}
	r.SetDesired(group1, d2)
	g.Expect(r.Snapshot(group1, d2.Hash).Rollout.Failed).To(BeZero())
}

// TestDataFailingFailsTheRevision: own metrics that show most items failing while a collector runs the
// revision fail it: the data no longer flows.
func TestDataFailingFailsTheRevision(t *testing.T) {
	g := NewWithT(t)
	r, clk := newTestRegistry(t)
	m := credential.Membership{Collector: group1, Source: credential.SourcePod}
	r.Observe(uid(1), m, full("pod"), &fakeLink{})
	d, _ := rolloutDesired(math.MaxUint64, v1alpha1.RolloutProgressing, clk.Now())
	d.OwnMetrics = true
	r.SetDesired(group1, d)
	r.mu.Lock()
	link := r.agents[uid(1)].link
	r.mu.Unlock()
	r.Observe(uid(1), m, Report{SequenceNum: 2, RemoteConfig: &RemoteConfigReport{Hash: d.Hash, Status: v1alpha1.ConfigStatusApplied}, Health: &Health{Healthy: true}}, link)
	t0 := clk.Now()
	export := func(sent, failed float64, at time.Duration) {
		g.Expect(r.RecordOwnMetrics(m, uid(1), []Sample{
			{Kind: v1alpha1.ComponentExporter, Component: "otlp", Signal: v1alpha1.SignalSpans, Outcome: OutcomeSent, Value: sent, Time: t0.Add(at)},
			{Kind: v1alpha1.ComponentExporter, Component: "otlp", Signal: v1alpha1.SignalSpans, Outcome: OutcomeFailed, Value: failed, Time: t0.Add(at)},
		})).To(Succeed())
	}
	export(100, 0, 0)
	export(700, 10, 60*time.Second)
	g.Expect(r.Snapshot(group1, d.Hash).Rollout.Failed).To(BeZero(), "a few failures are no trend")
	export(720, 900, 120*time.Second)
	obs := r.Snapshot(group1, d.Hash).Rollout
	g.Expect(obs.Failed).To(Equal(int32(1)))
	g.Expect(obs.LastFailure.Reason).To(Equal(v1alpha1.FailureDataFailing))
	g.Expect(obs.LastFailure.Message).To(ContainSubstring("exporters failed"))
}
