// Package rollout decides a ManagedCollector's progressive rollout: from the spec, the state the API holds
// and what the collectors did with the revision, the next state. It is pure; the ManagedCollector
// reconciler feeds it and writes what it returns, into status.rollout and status.history for users and
// into the supervisor ConfigMap for every replica (manifests.Accepted), so a restart or a failover
// continues from the same step.
package rollout

import (
	"fmt"
	"math"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/fleet"
)

// Input is what a decision is made from.
type Input struct {
	// Spec is spec.rollout; nil is AllAtOnce.
	Spec *v1alpha1.RolloutSpec
	// Revision is the hash of the accepted config.
	Revision string
	// Stable is the hash of the config collectors outside the rollout run: the last revision every
	// collector was offered; empty before any was.
	Stable string
	// Previous is status.rollout as the API holds it; History status.history.
	Previous *v1alpha1.RolloutStatus
	History  []v1alpha1.RevisionHistory
	// Observed is what the collectors, over every replica, did with Observed.Revision.
	Observed v1alpha1.ShareRollout
	// Now is the reconcile's time.
	Now time.Time
}

// Event is a rollout transition, recorded once on the ManagedCollector.
type Event struct {
	Type, Reason, Message string
}

// Decision is the next state.
type Decision struct {
	// Status is status.rollout; nil with AllAtOnce.
	Status *v1alpha1.RolloutStatus
	// History is status.history.
	History []v1alpha1.RevisionHistory
	// Active says whether collectors outside the steps run Stable: the ConfigMap then carries the stable
	// config and the rollout's state (Threshold, StepStarted).
	Active bool
	// Threshold: collectors ranked below it are in the steps.
	Threshold uint64
	// StepStarted is when the current step began.
	StepStarted time.Time
	// Superseded are revisions whose rollouts this one replaced.
	Superseded []string
	// Events are the transitions of this decision.
	Events []Event
	// RequeueAfter is when the decision should be made again without any other change: the end of a bake.
	RequeueAfter time.Duration
}

// Steps are spec.rollout.steps or the defaults.
func Steps(spec *v1alpha1.RolloutSpec) []intstr.IntOrString {
	if spec == nil || len(spec.Steps) == 0 {
		return v1alpha1.DefaultRolloutSteps
	}
	return spec.Steps
}

// BakeTime is spec.rollout.bakeTime or its default.
func BakeTime(spec *v1alpha1.RolloutSpec) time.Duration {
	if spec != nil && spec.BakeTime != nil {
		return spec.BakeTime.Duration
	}
	d, _ := time.ParseDuration(v1alpha1.DefaultBakeTime)
	return d
}

// Progressive says whether spec asks for a progressive rollout.
func Progressive(spec *v1alpha1.RolloutSpec) bool {
	return spec != nil && spec.Strategy == v1alpha1.RolloutProgressive
}

// Decide computes the next state.
func Decide(in Input) Decision {
	d := Decision{History: record(in.History, in.Revision, in.Now)}
	if !Progressive(in.Spec) {
		d.History = setOutcome(d.History, in.Revision, v1alpha1.OutcomeComplete)
		return d
	}
	prev := in.Previous
	if prev == nil || prev.Revision != in.Revision {
		return start(in, d)
	}
	st := prev.DeepCopy()
	d.Status = st
	switch st.Phase {
	case v1alpha1.RolloutComplete:
		return d
	case v1alpha1.RolloutRolledBack:
		// The revision failed: it is not offered again until spec.config changes.
		d.Active = true
		return d
	}
	d.Active = true
	d.Threshold = parseThreshold(st.Threshold)
	if st.StepStartedAt != nil {
		d.StepStarted = st.StepStartedAt.Time
	}
	d.Superseded = superseded(in.History, in.Revision)
	obs := in.Observed
	if obs.Revision != in.Revision {
		// The replicas have not reported on this revision yet.
		obs = v1alpha1.ShareRollout{Revision: in.Revision, Candidates: obs.Candidates, Canaries: obs.Canaries, LowestRanks: obs.LowestRanks}
	}
	st.Updated, st.Failed, st.LastFailure = obs.Updated, obs.Failed, obs.LastFailure
	if st.Phase == v1alpha1.RolloutHalted {
		return d
	}

	steps := Steps(in.Spec)
	allowed := scaled(in.Spec.MaxFailures, int(obs.Offered), false)
	if int(obs.Failed) > allowed {
		return fail(in, d, st, len(steps))
	}
	switch {
	case in.Spec.Paused && st.Phase != v1alpha1.RolloutPaused:
		st.Phase = v1alpha1.RolloutPaused
		st.BakeStartedAt = nil
		d.Events = append(d.Events, Event{corev1.EventTypeNormal, v1alpha1.EventRolloutPaused,
			fmt.Sprintf("Rollout of config %s paused at step %d of %d (spec.rollout.paused)", short(in.Revision), st.Step+1, len(steps))})
		return d
	case in.Spec.Paused:
		return d
	case st.Phase == v1alpha1.RolloutPaused:
		// Resumed: the bake starts over.
		st.Phase = v1alpha1.RolloutProgressing
		d.Events = append(d.Events, Event{corev1.EventTypeNormal, v1alpha1.EventRolloutStarted,
			fmt.Sprintf("Rollout of config %s resumed at step %d of %d", short(in.Revision), st.Step+1, len(steps))})
	}

	done := obs.Candidates == 0 || (obs.Offered > 0 && obs.Updated+obs.Failed >= obs.Offered && obs.Updated > 0)
	if !done {
		// Every collector of the step must stay applied and healthy for the whole bake.
		st.BakeStartedAt = nil
		return d
	}
	last := int(st.Step) >= len(steps)-1
	if last {
		return complete(in, d, st, len(steps))
	}
	bake := BakeTime(in.Spec)
	if st.BakeStartedAt == nil {
		// The API keeps whole seconds: a start stored as it is would read back up to a second earlier and
		// end the bake that much early. Rounded up, it reads back the same, and the bake is never short.
		t := metav1.NewTime(wholeSecondUp(in.Now))
		st.BakeStartedAt = &t
	}
	if left := st.BakeStartedAt.Add(bake).Sub(in.Now); left > 0 {
		d.RequeueAfter = left
		return d
	}
	// Baked: the next step.
	d.Events = append(d.Events, Event{corev1.EventTypeNormal, v1alpha1.EventRolloutStepCompleted,
		fmt.Sprintf("Rollout of config %s: step %d of %d completed (%s it), starting step %d",
			short(in.Revision), st.Step+1, len(steps), collectorsRun(obs.Updated), st.Step+2)})
	st.Step++
	enterStep(in, &d, st, steps)
	if int(st.Step) == len(steps)-1 && d.Threshold == math.MaxUint64 && obs.Candidates > 0 && obs.Updated >= obs.Candidates {
		// Everyone already runs it.
		return complete(in, d, st, len(steps))
	}
	return d
}

// start begins the rollout of a new revision.
func start(in Input, d Decision) Decision {
	steps := Steps(in.Spec)
	if in.Stable == "" || in.Stable == in.Revision {
		// Nothing to roll back to, or back to what everyone already ran: every collector gets it.
		now := metav1.NewTime(in.Now)
		d.Status = &v1alpha1.RolloutStatus{Revision: in.Revision, StableRevision: in.Revision, Phase: v1alpha1.RolloutComplete,
			Step: int32(len(steps) - 1), StartedAt: &now, CompletedAt: &now}
		d.History = setOutcome(d.History, in.Revision, v1alpha1.OutcomeComplete)
		return d
	}
	if prev := in.Previous; prev != nil && prev.Revision != in.Revision &&
		(prev.Phase == v1alpha1.RolloutProgressing || prev.Phase == v1alpha1.RolloutPaused || prev.Phase == v1alpha1.RolloutHalted) {
		d.History = setOutcome(d.History, prev.Revision, v1alpha1.OutcomeSuperseded)
	}
	now := metav1.NewTime(in.Now)
	st := &v1alpha1.RolloutStatus{Revision: in.Revision, StableRevision: in.Stable, Phase: v1alpha1.RolloutProgressing, StartedAt: &now}
	d.Status = st
	d.Active = true
	d.Superseded = superseded(d.History, in.Revision)
	d.History = setOutcome(d.History, in.Revision, v1alpha1.OutcomeProgressing)
	enterStep(in, &d, st, steps)
	d.Events = append(d.Events, Event{corev1.EventTypeNormal, v1alpha1.EventRolloutStarted,
		fmt.Sprintf("Rollout of config %s started: step 1 of %d offers it to %s; the others keep %s",
			short(in.Revision), len(steps), collectors(st.Target), short(in.Stable))})
	return d
}

// enterStep sets the threshold of st.Step from the collectors connected now.
func enterStep(in Input, d *Decision, st *v1alpha1.RolloutStatus, steps []intstr.IntOrString) {
	obs := in.Observed
	target := scaled(&steps[st.Step], int(obs.Candidates), true)
	lowest := make([]uint64, 0, len(obs.LowestRanks))
	for _, s := range obs.LowestRanks {
		if r, err := fleet.ParseRank(s); err == nil {
			lowest = append(lowest, r)
		}
	}
	threshold := fleet.Threshold(target, int(obs.Candidates), int(obs.Canaries), lowest)
	if int(st.Step) == len(steps)-1 {
		threshold = math.MaxUint64
	}
	if prev := parseThreshold(st.Threshold); prev > threshold {
		// A step never takes the revision from a collector that had it.
		threshold = prev
	}
	now := metav1.NewTime(in.Now)
	st.Target = int32(min(target, math.MaxInt32))
	st.Threshold = fleet.FormatRank(threshold)
	st.StepStartedAt = &now
	st.BakeStartedAt = nil
	d.Threshold = threshold
	d.StepStarted = in.Now
}

func fail(in Input, d Decision, st *v1alpha1.RolloutStatus, steps int) Decision {
	now := metav1.NewTime(in.Now)
	who := ""
	if f := st.LastFailure; f != nil {
		who = fmt.Sprintf("; last: %s (%s)", f.InstanceUID, f.Reason)
	}
	if in.Spec.OnFailure == v1alpha1.RolloutFailurePause {
		st.Phase = v1alpha1.RolloutHalted
		st.BakeStartedAt = nil
		d.History = setOutcome(d.History, in.Revision, v1alpha1.OutcomeHalted)
		d.Events = append(d.Events, Event{corev1.EventTypeWarning, v1alpha1.EventRolloutHalted,
			fmt.Sprintf("Rollout of config %s halted at step %d of %d: %s failed it%s; no further collector gets it",
				short(in.Revision), st.Step+1, steps, collectors(st.Failed), who)})
		return d
	}
	st.Phase = v1alpha1.RolloutRolledBack
	st.BakeStartedAt = nil
	st.CompletedAt = &now
	d.Threshold = 0
	d.History = setOutcome(d.History, in.Revision, v1alpha1.OutcomeRolledBack)
	d.Events = append(d.Events, Event{corev1.EventTypeWarning, v1alpha1.EventRolledBack,
		fmt.Sprintf("Rollout of config %s failed at step %d of %d: %s failed it%s; every collector runs %s again. Fix or revert spec.config",
			short(in.Revision), st.Step+1, steps, collectors(st.Failed), who, short(st.StableRevision))})
	return d
}

func complete(in Input, d Decision, st *v1alpha1.RolloutStatus, steps int) Decision {
	now := metav1.NewTime(in.Now)
	st.Phase = v1alpha1.RolloutComplete
	st.StableRevision = in.Revision
	st.Step = int32(steps - 1)
	st.CompletedAt = &now
	st.BakeStartedAt = nil
	st.Threshold = fleet.FormatRank(math.MaxUint64)
	d.Active = false
	d.Threshold = math.MaxUint64
	d.History = setOutcome(d.History, in.Revision, v1alpha1.OutcomeComplete)
	d.Events = append(d.Events, Event{corev1.EventTypeNormal, v1alpha1.EventRolloutCompleted,
		fmt.Sprintf("Rollout of config %s completed: %s it", short(in.Revision), collectorsRun(st.Updated))})
	return d
}

// scaled is a step or maxFailures of total: a count as it is, a percentage of total rounded up or down.
func scaled(v *intstr.IntOrString, total int, roundUp bool) int {
	if v == nil {
		return 0
	}
	n, err := intstr.GetScaledValueFromIntOrPercent(v, total, roundUp)
	if err != nil {
		return 0
	}
	return n
}

// record puts a newly accepted revision at the head of the history, bounded; a known one stays where it is.
func record(h []v1alpha1.RevisionHistory, revision string, now time.Time) []v1alpha1.RevisionHistory {
	if revision == "" {
		return h
	}
	if len(h) > 0 && h[0].Hash == revision {
		return slices.Clone(h)
	}
	out := []v1alpha1.RevisionHistory{{Hash: revision, AcceptedAt: metav1.NewTime(now), Outcome: v1alpha1.OutcomeProgressing}}
	for _, e := range h {
		if len(out) == v1alpha1.MaxRevisionHistory {
			break
		}
		out = append(out, e)
	}
	return out
}

// setOutcome sets the outcome of the newest entry of revision.
func setOutcome(h []v1alpha1.RevisionHistory, revision string, o v1alpha1.RevisionOutcome) []v1alpha1.RevisionHistory {
	for i := range h {
		if h[i].Hash == revision {
			h[i].Outcome = o
			break
		}
	}
	return h
}

// superseded are the revisions of the history whose rollouts a newer one replaced.
func superseded(h []v1alpha1.RevisionHistory, revision string) []string {
	var out []string
	for _, e := range h {
		if e.Outcome == v1alpha1.OutcomeSuperseded && e.Hash != revision {
			out = append(out, e.Hash)
		}
	}
	return out
}

func parseThreshold(s string) uint64 {
	r, err := fleet.ParseRank(s)
	if err != nil {
		return 0
	}
	return r
}

func short(hash string) string {
	if len(hash) > 12 {
		return hash[:12]
	}
	return hash
}

// wholeSecondUp is t rounded up to a whole second.
func wholeSecondUp(t time.Time) time.Time {
	if r := t.Truncate(time.Second); !r.Equal(t) {
		return r.Add(time.Second)
	}
	return t
}

// collectors is "1 collector" or "N collectors"; collectorsRun adds the verb, agreeing with the count.
func collectors(n int32) string {
	if n == 1 {
		return "1 collector"
	}
	return fmt.Sprintf("%d collectors", n)
}

func collectorsRun(n int32) string {
	if n == 1 {
		return "1 collector runs"
	}
	return fmt.Sprintf("%d collectors run", n)
}
