package fleet

import (
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/collectorconfig"
)

// Healing an agent whose effective config lacks the pushed config.
//
// The upstream supervisor v0.149.0 has a startup race: its empty first composition can overwrite the config
// the server just pushed, and it then reports the pushed hash APPLIED while the collector runs without it.
// Re-sending the same config does not help: the supervisor compares the merged config it holds in memory,
// finds it unchanged, and reports APPLIED again without touching the collector. What makes it rewrite the
// collector's config is a real change, so a heal is two pushes: first an empty config, on which the
// supervisor stops the collector, then the desired config, which it writes and starts. If the effective
// config still lacks the desired one after that, a Restart command follows. Attempts back off and are
// bounded.
const (
	// maxHealAttempts bounds the heals of one drift; after them the agent stays drifted until the config,
	// the agent or the drift changes.
	maxHealAttempts = 4
	// healBackoff is the wait after the first attempt; it doubles with each further one.
	healBackoff = 10 * time.Second
)

// emptyRevision is the config that makes the supervisor stop its collector: no file at all.
var emptyRevision = Revision{Hash: collectorconfig.Hash("")}

// driftState is an agent's drift and the progress of its heal.
type driftState struct {
	// shape is the structure of the effective config the agent last reported.
	shape *collectorconfig.Shape
	// missing is what the effective config lacks of the desired one; empty when it runs it.
	missing []string
	// checkedHash is the desired hash missing was computed against.
	checkedHash string
	// clearing is true while the empty config of a heal is pushed and not yet reported applied.
	clearing bool
	// restart asks the next reply to carry a Restart command.
	restart  bool
	attempts int
	next     time.Time
}

// drifted says whether the agent reports the desired config applied while its collector runs without it.
func (a *agent) drifted() bool { return len(a.drift.missing) > 0 }

// shapeOf parses a revision's structure once per hash. A rollout has two revisions in use, so a few are
// kept.
func (g *group) shapeOf(d *Revision) *collectorconfig.Shape {
	if s, ok := g.shapes[d.Hash]; ok {
		return s
	}
	s, err := collectorconfig.ParseShape(d.Config)
	if err != nil {
		// A desired config passed validation, so it parses; nothing to compare otherwise.
		return nil
	}
	if len(g.shapes) >= 4 {
		clear(g.shapes)
	}
	if g.shapes == nil {
		g.shapes = map[string]*collectorconfig.Shape{}
	}
	g.shapes[d.Hash] = s
	return s
}

// checkDriftLocked compares the agent's effective config with the config it should run and moves its heal
// along. It runs after the message's remote config status and effective config (newShape: its structure
// is new) have been recorded.
func (g *group) checkDriftLocked(a *agent, newShape bool, now time.Time) bool {
	changed := false
	if a.drift.clearing {
		// The empty config is in: now push the desired one.
		if a.hasConfig && a.config.Hash == emptyRevision.Hash && a.config.Status == v1alpha1.ConfigStatusApplied {
			a.drift.clearing = false
			a.sentHash = ""
			changed = true
		}
		return changed
	}
	d := a.target(g.desired)
	if d == nil || a.drift.shape == nil || !a.hasConfig || a.config.Hash != d.Hash || a.config.Status != v1alpha1.ConfigStatusApplied {
		return changed
	}
	// Compare again when the effective config or the desired hash is new; heartbeats only move the heal.
	if a.drift.checkedHash != d.Hash || newShape {
		want := g.shapeOf(d)
		if want == nil {
			return changed
		}
		was, before := a.drifted(), strings.Join(a.drift.missing, "\n")
		a.drift.missing = collectorconfig.Missing(want, a.drift.shape)
		a.drift.checkedHash = d.Hash
		switch {
		case !was && a.drifted():
			g.events.add(v1alpha1.EventConfigDrift, corev1.EventTypeWarning, driftText(a.drift.missing), d.Hash, a)
			a.drift.attempts, a.drift.next = 0, now
			changed = true
		case was && !a.drifted():
			g.events.add(v1alpha1.EventConfigHealed, corev1.EventTypeNormal, "", d.Hash, a)
			a.drift = driftState{shape: a.drift.shape, checkedHash: d.Hash}
			return true
		case strings.Join(a.drift.missing, "\n") != before:
			changed = true
		}
	}
	if a.drifted() && a.drift.attempts < maxHealAttempts && !now.Before(a.drift.next) {
		// The first attempts clear and re-push; the last ones restart the collector.
		if a.drift.attempts < maxHealAttempts/2 || a.caps&restartCapability == 0 {
			a.drift.clearing = true
			a.sentHash = ""
		} else {
			a.drift.restart = true
		}
		a.drift.next = now.Add(healBackoff << a.drift.attempts)
		a.drift.attempts++
		changed = true
	}
	return changed
}

// restartCapability is AgentCapabilities_AcceptsRestartCommand.
const restartCapability = 0x00000400

func driftText(missing []string) string {
	const max = 5
	if len(missing) > max {
		return "effective config lacks " + strings.Join(missing[:max], ", ") + " and more"
	}
	return "effective config lacks " + strings.Join(missing, ", ")
}
