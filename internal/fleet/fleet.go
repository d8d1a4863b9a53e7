// Package fleet is the in-memory view of the collectors connected to this replica's OpAMP server, keyed by
// instance UID, and what each ManagedCollector's collectors should run, as this replica's informer cache
// says (the accepted-config ConfigMap, see manifests.AcceptedConfig).
//
// # Concurrency
//
// One mutex, Registry.mu, guards every agent and group. The OpAMP server's callbacks (Observe, Take,
// Disconnect, OfferOwnMetrics), the OTLP intake (RecordOwnMetrics), the informer handlers (Forget,
// EvictToken), the desired-config controller (SetDesired), the reporter and the reconciler (Snapshot,
// DrainEvents) and the periodic Sweep all take it, briefly: nothing under it blocks, calls the API server or
// parses YAML (effective configs are parsed before it is taken, and only when their hash is new).
// Link.Notify and Link.Close are called after it is released.
//
// Change signals leave through a second, inner lock, pendingMu, taken only to add or drain the set of
// signalled groups (never the other way round, so the two cannot deadlock), and a goroutine started by
// Start that delivers them on Changes. Delivery blocks only on Changes; idle detection runs in Start's own
// loop, so a replica whose signals nobody reads still expires its agents.
package fleet

import (
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
)

// Revision is one collector config as the OpAMP server pushes it.
type Revision struct {
	// Config is the collector config, byte for byte. It has passed collectorconfig.Validate.
	Config string
	// Hash is collectorconfig.Hash(Config), computed once where the revision is read.
	Hash string
}

// Desired is what a group's collectors should run and how they are treated.
type Desired struct {
	// Revision is the accepted config: what every collector runs once a rollout completes.
	Revision
	// Rollout is set while a progressive rollout of Revision has not completed; nil means every collector
	// runs Revision.
	Rollout *Rollout
	// OwnMetrics says whether agents are offered an own_metrics destination.
	OwnMetrics bool
	// ApplyTimeout is the supervisor's config_apply_timeout: after a push, an agent is applying for this long
	// (plus ApplyGrace) unless it reports the outcome earlier, and being unhealthy then is no warning.
	ApplyTimeout time.Duration
	// MaxAgents caps the agents the group may hold on this replica; zero is no cap. A group without a
	// desired state yet holds at most DefaultMaxAgents.
	MaxAgents int
	// Canary selects, over non-identifying attributes, the collectors a progressive rollout ranks first;
	// nil selects none. It is known before any rollout starts, so the first step is placed right.
	Canary labels.Selector
}

// Rollout says which collectors run the new revision during a progressive rollout, and which the stable one.
type Rollout struct {
	// Stable is what collectors outside the rollout's steps run.
	Stable Revision
	// Phase is the rollout's phase; RolledBack sends every collector Stable.
	Phase v1alpha1.RolloutPhase
	// Threshold: a collector whose rank is below it is in the rollout's steps.
	Threshold uint64
	// StepStarted is when the current step began: a collector first seen after it is a joiner and runs
	// Stable unless it already runs the new revision.
	StepStarted time.Time
	// Superseded are revisions of earlier, superseded rollouts: collectors running one take the new one.
	Superseded []string
	// BakeTime is how long an offered collector may stay disconnected before it counts as failed.
	BakeTime time.Duration
}

// Snapshot is this replica's share of a ManagedCollector's status.
type Snapshot struct {
	// Counts covers every agent of the group; Desired is left for the reconciler.
	Counts v1alpha1.AgentCounts
	// Agents is bounded by v1alpha1.MaxAgentsInStatus: failing and unhealthy first, then the most recent.
	Agents []v1alpha1.AgentStatus
	// Throughput is from the agents' own metrics; nil when none reported recently.
	Throughput *v1alpha1.ThroughputStatus
	// Rollout is this replica's candidates for a progressive rollout and, during one, what they did with
	// its revision; nil while the group has no desired state.
	Rollout *v1alpha1.ShareRollout
}

// Event is an agent transition recorded as a Kubernetes Event on the ManagedCollector.
type Event struct {
	// Type is corev1.EventTypeNormal or corev1.EventTypeWarning.
	Type string
	// Reason is one of the v1alpha1.Event* constants.
	Reason string
	// Message never contains a credential.
	Message string
}

// Fleet is what the reconcilers need from the OpAMP side.
type Fleet interface {
	// SetDesired records what the group's collectors should run and pushes it to its connected agents that
	// do not run it yet.
	SetDesired(collector types.NamespacedName, desired Desired)
	// Snapshot returns the group's agents as of now, counted against countHash.
	Snapshot(collector types.NamespacedName, countHash string) Snapshot
	// DrainEvents returns the group's transitions since the last call, aggregated.
	DrainEvents(collector types.NamespacedName) []Event
}
