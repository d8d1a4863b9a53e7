// Package fleet is the in-memory view of the collectors connected to this replica's OpAMP server, keyed by
// instance UID, and the desired config of every ManagedCollector as the reconciler last accepted it.
//
// The ManagedCollector reconciler is its only writer of desired state and its only reader of snapshots;
// the OpAMP server updates agents from its callbacks and never calls the API server.
package fleet

import (
	"k8s.io/apimachinery/pkg/types"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
)

// Desired is a ManagedCollector's validated config, as the OpAMP server pushes it.
type Desired struct {
	// Config is spec.config, byte for byte. It has passed collectorconfig.Validate.
	Config string
	// Hash is collectorconfig.Hash(Config).
	Hash string
	// OwnMetrics says whether agents are offered an own_metrics destination.
	OwnMetrics bool
}

// Snapshot is what the reconciler writes into a ManagedCollector's status.
type Snapshot struct {
	// Counts covers every agent of the group; Desired is left for the reconciler.
	Counts v1alpha1.AgentCounts
	// Agents is bounded by v1alpha1.MaxAgentsInStatus: failing and unhealthy first, then the most recent.
	Agents []v1alpha1.AgentStatus
	// Events are the transitions since the last snapshot, for the reconciler to record.
	Events []Event
	// Throughput is from the agents' own metrics; nil when none reported recently.
	Throughput *v1alpha1.ThroughputStatus
}

// Event is an agent transition the reconciler records as a Kubernetes Event on the ManagedCollector.
type Event struct {
	// Type is corev1.EventTypeNormal or corev1.EventTypeWarning.
	Type string
	// Reason is one of the v1alpha1.Event* constants.
	Reason string
	// Message never contains a credential.
	Message string
}

// Fleet is what the ManagedCollector reconciler needs from the OpAMP side.
type Fleet interface {
	// SetDesired records the group's accepted config and pushes it to its connected agents whose last
	// reported hash differs.
	SetDesired(collector types.NamespacedName, desired Desired)
	// Forget drops a deleted group and closes its agents' connections.
	Forget(collector types.NamespacedName)
	// Snapshot returns the group's agents as of now and drains its pending events.
	Snapshot(collector types.NamespacedName, desiredHash string) Snapshot
}
