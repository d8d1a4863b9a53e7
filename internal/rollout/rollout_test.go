package rollout

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/fleet"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func progressive(mut func(*v1alpha1.RolloutSpec)) *v1alpha1.RolloutSpec {
	s := &v1alpha1.RolloutSpec{
		Strategy:  v1alpha1.RolloutProgressive,
		Steps:     []intstr.IntOrString{intstr.FromInt32(1), intstr.FromString("50%"), intstr.FromString("100%")},
		BakeTime:  &metav1.Duration{Duration: 10 * time.Second},
		OnFailure: v1alpha1.RolloutFailureRollback,
	}
	if mut != nil {
		mut(s)
	}
	return s
}

func reasons(es []Event) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Reason)
	}
	return out
}

// TestAllAtOnceIsToday: no rollout state, the revision is complete at once.
func TestAllAtOnceIsToday(t *testing.T) {
	g := NewWithT(t)
	d := Decide(Input{Revision: "r2", Stable: "r1", Now: t0})
	g.Expect(d.Status).To(BeNil())
	g.Expect(d.Active).To(BeFalse())
	g.Expect(d.History).To(Equal([]v1alpha1.RevisionHistory{{Hash: "r2", AcceptedAt: metav1.NewTime(t0), Outcome: v1alpha1.OutcomeComplete}}))
}

// TestTheFirstConfigHasNothingToRollBackTo: with no stable revision, everyone gets the first at once.
func TestTheFirstConfigHasNothingToRollBackTo(t *testing.T) {
	g := NewWithT(t)
	d := Decide(Input{Spec: progressive(nil), Revision: "r1", Now: t0})
	g.Expect(d.Active).To(BeFalse())
	g.Expect(d.Status.Phase).To(Equal(v1alpha1.RolloutComplete))
	g.Expect(d.Status.StableRevision).To(Equal("r1"))
}

// TestStepsBakeAndComplete walks a rollout through its steps: each step waits for its collectors and the
// bake time, then the next one offers the revision to more; the last completes it.
func TestStepsBakeAndComplete(t *testing.T) {
	g := NewWithT(t)
	spec := progressive(nil)
	obs := v1alpha1.ShareRollout{Revision: "r2", Candidates: 10, LowestRanks: []string{"0000000000000010", "0000000000000020"}}
	d := Decide(Input{Spec: spec, Revision: "r2", Stable: "r1", Observed: obs, Now: t0})
	g.Expect(reasons(d.Events)).To(Equal([]string{v1alpha1.EventRolloutStarted}))
	g.Expect(d.Events[0].Message).To(ContainSubstring("step 1 of 3 offers it to 1 collector;"))
	g.Expect(d.Active).To(BeTrue())
	g.Expect(d.Status.Phase).To(Equal(v1alpha1.RolloutProgressing))
	g.Expect(d.Status.Target).To(Equal(int32(1)))
	g.Expect(d.Threshold).To(Equal(uint64(0x11)), "exactly the lowest-ranked collector")
	g.Expect(d.History[0]).To(Equal(v1alpha1.RevisionHistory{Hash: "r2", AcceptedAt: metav1.NewTime(t0), Outcome: v1alpha1.OutcomeProgressing}))

	// Not yet applied: no bake.
	st := d.Status
	obs.Offered = 1
	d = Decide(Input{Spec: spec, Revision: "r2", Stable: "r1", Previous: st, History: d.History, Observed: obs, Now: t0.Add(time.Second)})
	g.Expect(d.Status.BakeStartedAt).To(BeNil())
	g.Expect(d.Events).To(BeEmpty())
	// Applied and healthy: the bake starts, and the next decision is due at its end.
	obs.Updated = 1
	d = Decide(Input{Spec: spec, Revision: "r2", Stable: "r1", Previous: d.Status, History: d.History, Observed: obs, Now: t0.Add(2 * time.Second)})
	g.Expect(d.Status.BakeStartedAt.Time).To(Equal(t0.Add(2 * time.Second)))
	g.Expect(d.RequeueAfter).To(Equal(10 * time.Second))
	g.Expect(d.Status.Step).To(BeZero())
	// Baked: step 2 offers half.
	d = Decide(Input{Spec: spec, Revision: "r2", Stable: "r1", Previous: d.Status, History: d.History, Observed: obs, Now: t0.Add(12 * time.Second)})
	g.Expect(reasons(d.Events)).To(Equal([]string{v1alpha1.EventRolloutStepCompleted}))
	g.Expect(d.Status.Step).To(Equal(int32(1)))
	g.Expect(d.Status.Target).To(Equal(int32(5)))
	g.Expect(d.Status.StepStartedAt.Time).To(Equal(t0.Add(12 * time.Second)))
	g.Expect(d.Threshold).To(BeNumerically(">", uint64(0x11)))
	// Step 2 bakes, step 3 offers everyone, and once all run it the rollout completes.
	obs.Offered, obs.Updated = 5, 5
	d = Decide(Input{Spec: spec, Revision: "r2", Stable: "r1", Previous: d.Status, History: d.History, Observed: obs, Now: t0.Add(13 * time.Second)})
	d = Decide(Input{Spec: spec, Revision: "r2", Stable: "r1", Previous: d.Status, History: d.History, Observed: obs, Now: t0.Add(23 * time.Second)})
	g.Expect(d.Status.Step).To(Equal(int32(2)))
	g.Expect(d.Threshold).To(Equal(uint64(math.MaxUint64)))
	g.Expect(d.Active).To(BeTrue())
	obs.Offered, obs.Updated = 10, 10
	d = Decide(Input{Spec: spec, Revision: "r2", Stable: "r1", Previous: d.Status, History: d.History, Observed: obs, Now: t0.Add(24 * time.Second)})
	g.Expect(reasons(d.Events)).To(Equal([]string{v1alpha1.EventRolloutCompleted}))
	g.Expect(d.Status.Phase).To(Equal(v1alpha1.RolloutComplete))
	g.Expect(d.Status.StableRevision).To(Equal("r2"))
	g.Expect(d.Active).To(BeFalse(), "no stable config is kept any more")
	g.Expect(d.History[0].Outcome).To(Equal(v1alpha1.OutcomeComplete))
	// Complete stays complete.
	again := Decide(Input{Spec: spec, Revision: "r2", Stable: "r2", Previous: d.Status, History: d.History, Observed: obs, Now: t0.Add(time.Hour)})
	g.Expect(again.Events).To(BeEmpty())
	g.Expect(again.Status.Phase).To(Equal(v1alpha1.RolloutComplete))
}

// TestFailureRollsBackOrHalts: more failures than maxFailures end the rollout, by the policy; a rolled-back
// revision is never offered again until spec.config changes.
func TestFailureRollsBackOrHalts(t *testing.T) {
	g := NewWithT(t)
	obs := v1alpha1.ShareRollout{Revision: "r2", Candidates: 100}
	start := func(spec *v1alpha1.RolloutSpec) Decision {
		return Decide(Input{Spec: spec, Revision: "r2", Stable: "r1", Observed: obs, Now: t0})
	}
	failing := obs
	failing.Offered, failing.Failed = 1, 1
	failing.LastFailure = &v1alpha1.RolloutFailure{InstanceUID: "u1", Reason: v1alpha1.FailureConfigFailed, Message: "port in use"}

	spec := progressive(nil)
	d := start(spec)
	d = Decide(Input{Spec: spec, Revision: "r2", Stable: "r1", Previous: d.Status, History: d.History, Observed: failing, Now: t0.Add(time.Second)})
	g.Expect(reasons(d.Events)).To(Equal([]string{v1alpha1.EventRolledBack}))
	g.Expect(d.Events[0].Type).To(Equal("Warning"))
	g.Expect(d.Events[0].Message).To(ContainSubstring("every collector runs r1 again"))
	g.Expect(d.Status.Phase).To(Equal(v1alpha1.RolloutRolledBack))
	g.Expect(d.Status.LastFailure.Message).To(Equal("port in use"))
	g.Expect(d.Active).To(BeTrue(), "the stable config stays in force")
	g.Expect(d.History[0].Outcome).To(Equal(v1alpha1.OutcomeRolledBack))
	later := Decide(Input{Spec: spec, Revision: "r2", Stable: "r1", Previous: d.Status, History: d.History, Observed: obs, Now: t0.Add(time.Hour)})
	g.Expect(later.Status.Phase).To(Equal(v1alpha1.RolloutRolledBack), "not offered again")
	g.Expect(later.Events).To(BeEmpty())
	// A different config starts over.
	next := Decide(Input{Spec: spec, Revision: "r3", Stable: "r1", Previous: later.Status, History: later.History, Observed: obs, Now: t0.Add(2 * time.Hour)})
	g.Expect(next.Status.Phase).To(Equal(v1alpha1.RolloutProgressing))
	g.Expect(next.Status.Revision).To(Equal("r3"))

	// Within maxFailures it goes on.
	tolerant := progressive(func(s *v1alpha1.RolloutSpec) { mf := intstr.FromString("50%"); s.MaxFailures = &mf })
	d = start(tolerant)
	some := obs
	some.Offered, some.Failed, some.Updated = 4, 2, 2
	d = Decide(Input{Spec: tolerant, Revision: "r2", Stable: "r1", Previous: d.Status, History: d.History, Observed: some, Now: t0.Add(time.Second)})
	g.Expect(d.Status.Phase).To(Equal(v1alpha1.RolloutProgressing))

	// onFailure: Pause halts.
	pause := progressive(func(s *v1alpha1.RolloutSpec) { s.OnFailure = v1alpha1.RolloutFailurePause })
	d = start(pause)
	d = Decide(Input{Spec: pause, Revision: "r2", Stable: "r1", Previous: d.Status, History: d.History, Observed: failing, Now: t0.Add(time.Second)})
	g.Expect(reasons(d.Events)).To(Equal([]string{v1alpha1.EventRolloutHalted}))
	g.Expect(d.Status.Phase).To(Equal(v1alpha1.RolloutHalted))
	g.Expect(d.Threshold).To(Equal(parseThreshold(d.Status.Threshold)), "those that have it keep it")
}

// TestBakeIsNeverShortAfterTheAPIRoundTrip: the API keeps whole seconds of bakeStartedAt, and a status
// read back must not end the bake early.
func TestBakeIsNeverShortAfterTheAPIRoundTrip(t *testing.T) {
	g := NewWithT(t)
	spec := progressive(nil)
	obs := v1alpha1.ShareRollout{Revision: "r2", Candidates: 10, Offered: 1, Updated: 1, LowestRanks: []string{"0000000000000010"}}
	d := Decide(Input{Spec: spec, Revision: "r2", Stable: "r1", Observed: obs, Now: t0})
	applied := t0.Add(2300 * time.Millisecond)
	d = Decide(Input{Spec: spec, Revision: "r2", Stable: "r1", Previous: d.Status, History: d.History, Observed: obs, Now: applied})
	g.Expect(d.Status.BakeStartedAt).NotTo(BeNil())
	g.Expect(d.RequeueAfter).To(BeNumerically(">=", 10*time.Second))

	// What the API server returns: RFC 3339 with whole seconds.
	raw, err := json.Marshal(d.Status)
	g.Expect(err).NotTo(HaveOccurred())
	var stored v1alpha1.RolloutStatus
	g.Expect(json.Unmarshal(raw, &stored)).To(Succeed())
	almost := applied.Add(10*time.Second - time.Millisecond)
	d = Decide(Input{Spec: spec, Revision: "r2", Stable: "r1", Previous: &stored, History: d.History, Observed: obs, Now: almost})
	g.Expect(d.Status.Step).To(BeZero(), "the bake has not lasted 10 s yet")
	g.Expect(d.RequeueAfter).To(BeNumerically(">", 0))
	d = Decide(Input{Spec: spec, Revision: "r2", Stable: "r1", Previous: &stored, History: d.History, Observed: obs, Now: almost.Add(d.RequeueAfter)})
	g.Expect(d.Status.Step).To(Equal(int32(1)), "baked once the requeue is due")
}

// TestPauseAndResume: paused holds the step, resuming starts the bake over.
func TestPauseAndResume(t *testing.T) {
	g := NewWithT(t)
	obs := v1alpha1.ShareRollout{Revision: "r2", Candidates: 10, Offered: 1, Updated: 1}
	spec := progressive(nil)
	d := Decide(Input{Spec: spec, Revision: "r2", Stable: "r1", Observed: obs, Now: t0})
	d = Decide(Input{Spec: spec, Revision: "r2", Stable: "r1", Previous: d.Status, History: d.History, Observed: obs, Now: t0.Add(time.Second)})
	g.Expect(d.Status.BakeStartedAt).NotTo(BeNil())
	paused := progressive(func(s *v1alpha1.RolloutSpec) { s.Paused = true })
	d = Decide(Input{Spec: paused, Revision: "r2", Stable: "r1", Previous: d.Status, History: d.History, Observed: obs, Now: t0.Add(2 * time.Second)})
	g.Expect(reasons(d.Events)).To(Equal([]string{v1alpha1.EventRolloutPaused}))
	g.Expect(d.Status.Phase).To(Equal(v1alpha1.RolloutPaused))
	d = Decide(Input{Spec: paused, Revision: "r2", Stable: "r1", Previous: d.Status, History: d.History, Observed: obs, Now: t0.Add(time.Hour)})
	g.Expect(d.Status.Step).To(BeZero(), "held where it is")
	g.Expect(d.Events).To(BeEmpty())
	d = Decide(Input{Spec: spec, Revision: "r2", Stable: "r1", Previous: d.Status, History: d.History, Observed: obs, Now: t0.Add(time.Hour + time.Second)})
	g.Expect(d.Status.Phase).To(Equal(v1alpha1.RolloutProgressing))
	g.Expect(d.Status.BakeStartedAt.Time).To(Equal(t0.Add(time.Hour+time.Second)), "the bake starts over")
	g.Expect(d.Status.Step).To(BeZero())
}

// TestANewConfigSupersedesTheRollout: it starts from step 0; the superseded revision is named so the
// collectors that had it take the new one.
func TestANewConfigSupersedesTheRollout(t *testing.T) {
	g := NewWithT(t)
	obs := v1alpha1.ShareRollout{Revision: "r2", Candidates: 10, Offered: 5, Updated: 5}
	spec := progressive(nil)
	d := Decide(Input{Spec: spec, Revision: "r2", Stable: "r1", Observed: obs, Now: t0})
	d.Status.Step = 1
	d = Decide(Input{Spec: spec, Revision: "r3", Stable: "r1", Previous: d.Status, History: d.History, Observed: obs, Now: t0.Add(time.Minute)})
	g.Expect(d.Status.Revision).To(Equal("r3"))
	g.Expect(d.Status.Step).To(BeZero())
	g.Expect(d.Status.StableRevision).To(Equal("r1"))
	g.Expect(d.Superseded).To(Equal([]string{"r2"}))
	g.Expect(d.History[0].Hash).To(Equal("r3"))
	g.Expect(d.History[1]).To(HaveField("Outcome", v1alpha1.OutcomeSuperseded))
}

// TestHistoryIsBounded keeps the last ten revisions.
func TestHistoryIsBounded(t *testing.T) {
	g := NewWithT(t)
	var h []v1alpha1.RevisionHistory
	for i := range 15 {
		h = Decide(Input{Revision: fleet.FormatRank(uint64(i)), History: h, Now: t0.Add(time.Duration(i) * time.Second)}).History
	}
	g.Expect(h).To(HaveLen(v1alpha1.MaxRevisionHistory))
	g.Expect(h[0].Hash).To(Equal(fleet.FormatRank(14)))
}
