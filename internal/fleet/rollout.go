package fleet

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/bounded"
)

// A progressive rollout, as far as one replica's agents go.
//
// The leader decides the steps; every replica decides for the agents connected to it, from the same API
// state, which revision each runs: an agent's rank is a hash of its instance UID with canaries (agents
// matching the canary selector) in the lower half, so a rollout that is resumed, retried or continued on
// another replica picks the same agents, and an agent is in the rollout's steps when its rank is below the
// step's threshold. Each replica reports what its agents did with the revision (Snapshot.Rollout); the
// leader merges the reports and moves the steps.

// maxLowestRanks bounds the ranks a replica reports for the leader to place small steps exactly.
const maxLowestRanks = 32

// Rank is an agent's place in a progressive rollout: the first 63 bits of sha256(instance UID), with the
// top bit set for agents that are not canaries, so canaries come first.
func Rank(uid string, canary bool) uint64 {
	sum := sha256.Sum256([]byte(uid))
	r := binary.BigEndian.Uint64(sum[:8]) >> 1
	if !canary {
		r |= 1 << 63
	}
	return r
}

// FormatRank renders a rank as the API carries it: 16 hex digits.
func FormatRank(r uint64) string { return fmt.Sprintf("%016x", r) }

// ParseRank reads FormatRank's output.
func ParseRank(s string) (uint64, error) {
	var r uint64
	if len(s) != 16 {
		return 0, fmt.Errorf("rank %q is not 16 hex digits", s)
	}
	if _, err := fmt.Sscanf(s, "%016x", &r); err != nil {
		return 0, fmt.Errorf("rank %q: %w", s, err)
	}
	return r, nil
}

// rankLocked computes the agent's rank once its description is known, and again when the canary selector
// or its attributes change.
func (a *agent) rankLocked(d *Desired) {
	var sel labels.Selector
	if d != nil && d.Rollout != nil {
		sel = d.Rollout.Canary
	}
	canary := sel != nil && !sel.Empty() && sel.Matches(labels.Set(a.description.NonIdentifying))
	if a.rank == 0 || canary != a.canary {
		a.canary = canary
		a.rank = Rank(a.uid, canary)
	}
}

// target is the revision the agent should run: nothing for a read-only member, the empty config while a
// heal clears it, and during a progressive rollout the new revision or the stable one.
func (a *agent) target(d *Desired) *Revision {
	if d == nil || !a.acceptsRemoteConfig {
		return nil
	}
	if a.drift.clearing {
		return &emptyRevision
	}
	ro := d.Rollout
	if ro == nil {
		return &d.Revision
	}
	switch {
	case ro.Phase == v1alpha1.RolloutRolledBack:
		return &ro.Stable
	case a.hasConfig && a.config.Hash == d.Hash, a.sentHash == d.Hash:
		// It has the revision (or was sent it): it keeps it, also where the rollout paused or halted, and
		// after it moved here from another replica.
		return &d.Revision
	case a.hasConfig && a.config.Hash != ro.Stable.Hash && slices.Contains(ro.Superseded, a.config.Hash):
		// It runs a superseded revision: the new one replaces it.
		return &d.Revision
	case a.rank < ro.Threshold && !a.firstSeen.After(ro.StepStarted) && ro.Phase == v1alpha1.RolloutProgressing:
		return &d.Revision
	default:
		return &ro.Stable
	}
}

// revisionFailure is why an agent failed a rollout's revision.
type revisionFailure struct {
	hash    string
	reason  string
	message string
	at      time.Time
}

// offered says whether the agent is sent, or runs, the rollout's revision.
func (a *agent) offered(d *Desired) bool {
	t := a.target(d)
	return t != nil && t.Hash == d.Hash
}

// checkFailureLocked decides whether the agent failed the revision of the group's progressive rollout: it
// reported it FAILED, stayed unhealthy for UnhealthyGrace running it, drifted from it beyond healing, or
// stayed disconnected for the bake time after it was offered it. A failure sticks until the revision
// changes.
func (g *group) checkFailureLocked(a *agent, now time.Time) bool {
	d := g.desired
	if d == nil || d.Rollout == nil || d.Rollout.Phase == v1alpha1.RolloutRolledBack || a.failure != nil ||
		!a.acceptsRemoteConfig {
		return false
	}
	runs := a.hasConfig && a.config.Hash == d.Hash
	var f *revisionFailure
	switch {
	case runs && a.config.Status == v1alpha1.ConfigStatusFailed:
		f = &revisionFailure{reason: v1alpha1.FailureConfigFailed, message: a.config.Message}
	case runs && a.config.Status == v1alpha1.ConfigStatusApplied && a.connected && a.reportsUnhealthy() &&
		!a.applying(now, g.applyTimeout()) && now.Sub(a.unhealthySince) > UnhealthyGrace:
		f = &revisionFailure{reason: v1alpha1.FailureUnhealthy, message: unhealthyText(a.health)}
	case runs && a.drifted() && a.drift.attempts >= maxHealAttempts && !now.Before(a.drift.next):
		f = &revisionFailure{reason: v1alpha1.FailureConfigDrift, message: driftText(a.drift.missing)}
	case runs && !a.connected && now.Sub(a.lastSeen) > d.Rollout.BakeTime:
		f = &revisionFailure{reason: v1alpha1.FailureDisconnected,
			message: fmt.Sprintf("disconnected while running the revision and not back within the bake time (%s)", d.Rollout.BakeTime)}
	}
	if f == nil {
		return false
	}
	f.hash, f.at = d.Hash, now
	a.failure = f
	return true
}

// failDataLocked records that the agent's own metrics show most of its items failing while it runs the
// rollout's revision: the data no longer flows.
func (g *group) failDataLocked(a *agent, o *ownMetrics) bool {
	d := g.desired
	if d == nil || d.Rollout == nil || d.Rollout.Phase == v1alpha1.RolloutRolledBack || a.failure != nil ||
		!a.hasConfig || a.config.Hash != d.Hash || a.config.Status != v1alpha1.ConfigStatusApplied {
		return false
	}
	msg, failing := o.failing()
	if !failing {
		return false
	}
	a.failure = &revisionFailure{hash: d.Hash, reason: v1alpha1.FailureDataFailing, message: msg, at: o.received}
	return true
}

// rolloutLocked is what the group's agents here did with the rollout's revision; nil without a rollout.
func (g *group) rolloutLocked(members []*agent) *v1alpha1.ShareRollout {
	d := g.desired
	if d == nil || d.Rollout == nil {
		return nil
	}
	out := &v1alpha1.ShareRollout{Revision: d.Hash}
	var ranks []uint64
	var last *agent
	for _, a := range members {
		if a.connected && a.described && a.acceptsRemoteConfig {
			out.Candidates++
			if a.canary {
				out.Canaries++
			}
			ranks = append(ranks, a.rank)
		}
		if a.failure != nil && a.failure.hash == d.Hash {
			out.Failed++
			if last == nil || a.failure.at.After(last.failure.at) {
				last = a
			}
			continue
		}
		runs := a.hasConfig && a.config.Hash == d.Hash
		if !a.acceptsRemoteConfig || !a.offered(d) || (!a.connected && !runs) {
			continue
		}
		out.Offered++
		if a.connected && a.hasConfig && a.config.Hash == d.Hash && a.config.Status == v1alpha1.ConfigStatusApplied &&
			a.healthy() && !a.drifted() {
			out.Updated++
		}
	}
	out.Offered += out.Failed
	slices.Sort(ranks)
	for _, r := range ranks[:min(len(ranks), maxLowestRanks)] {
		out.LowestRanks = append(out.LowestRanks, FormatRank(r))
	}
	if last != nil {
		out.LastFailure = &v1alpha1.RolloutFailure{
			InstanceUID: last.uid,
			Collector:   bounded.Truncate(collectorName(last), maxNameLen),
			Reason:      last.failure.reason,
			Message:     bounded.Truncate(last.failure.message, maxMessageLen),
		}
	}
	return out
}

func collectorName(a *agent) string {
	if a.description.PodName != "" {
		return a.description.PodName
	}
	return a.description.HostName
}

// failing says whether an agent's latest rates show most of its items failing: exporters' send failures
// above sent, or receivers' refusals above accepted, with traffic to speak of.
func (o *ownMetrics) failing() (string, bool) {
	const minRate = 0.1 // items per second: below it, a few failures are not a trend
	var sent, failed, accepted, refused float64
	for k, s := range o.series {
		if !s.rated {
			continue
		}
		switch k.Outcome {
		case OutcomeSent:
			sent += s.rate
		case OutcomeFailed:
			failed += s.rate
		case OutcomeAccepted:
			accepted += s.rate
		case OutcomeRefused:
			refused += s.rate
		}
	}
	switch {
	case failed > minRate && failed > sent:
		return fmt.Sprintf("exporters failed %.0f%% of their items", 100*failed/(sent+failed)), true
	case refused > minRate && refused > accepted:
		return fmt.Sprintf("receivers refused %.0f%% of their items", 100*refused/(accepted+refused)), true
	}
	return "", false
}

// Threshold is the rank below which target agents out of candidates, canaries among them, are in a step:
// exactly at the target'th lowest rank when the merged lowest ranks reach it, else by the share of the hash
// space that holds target agents, canaries (the lower half) first. It is 0 for no agent and MaxUint64 for
// all.
func Threshold(target, candidates, canaries int, lowest []uint64) uint64 {
	switch {
	case target <= 0:
		return 0
	case target >= candidates:
		return math.MaxUint64
	case target <= len(lowest):
		slices.Sort(lowest)
		return lowest[target-1] + 1
	}
	const half = 1 << 63
	if target <= canaries {
		return uint64(float64(target) / float64(canaries) * half)
	}
	others := candidates - canaries
	return half + uint64(float64(target-canaries)/float64(others)*(half-1))
}
