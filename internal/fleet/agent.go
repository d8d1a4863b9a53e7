package fleet

import (
	"time"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/credential"
)

// Description is the agent's identity as its AgentDescription reports it.
type Description struct {
	// HostName is host.name.
	HostName string
	// PodName is k8s.pod.name.
	PodName string
	// NodeName is k8s.node.name.
	NodeName string
	// ServiceVersion is service.version: the collector's version.
	ServiceVersion string
	// NonIdentifying are the non-identifying attributes as strings.
	NonIdentifying map[string]string
}

// Health is what the agent last reported about its health.
type Health struct {
	// Healthy is the agent's own verdict.
	Healthy bool
	// Status is the agent-defined status text, for example StatusOK.
	Status string
	// LastError is the agent's last error, empty when healthy.
	LastError string
	// Components is the number of components the agent reported health for.
	Components int
	// UnhealthyComponents names up to a few unhealthy components, for the status message.
	UnhealthyComponents []string
}

func (h *Health) equal(o *Health) bool {
	if h == nil || o == nil {
		return h == o
	}
	if h.Healthy != o.Healthy || h.Status != o.Status || h.LastError != o.LastError ||
		h.Components != o.Components || len(h.UnhealthyComponents) != len(o.UnhealthyComponents) {
		return false
	}
	for i := range h.UnhealthyComponents {
		if h.UnhealthyComponents[i] != o.UnhealthyComponents[i] {
			return false
		}
	}
	return true
}

// RemoteConfigReport is the agent's RemoteConfigStatus.
type RemoteConfigReport struct {
	// Hash is the hex sha256 of the remote config the status is about.
	Hash string
	// Status is Applying, Applied, Failed or Unset.
	Status v1alpha1.ConfigStatus
	// Message is the supervisor's error text when Status is Failed.
	Message string
}

// Report is one AgentToServer message as the OpAMP server decoded it. A nil field was not in the message:
// OpAMP agents send only what changed.
type Report struct {
	// SequenceNum is the message's sequence number; a gap means this replica missed messages.
	SequenceNum uint64
	// Description is set in a full state report.
	Description *Description
	// Health is set when the agent's health changed.
	Health *Health
	// RemoteConfig is set when the agent's remote config status changed.
	RemoteConfig *RemoteConfigReport
	// EffectiveConfigHash is the hex sha256 of the effective config, when the agent sent it.
	EffectiveConfigHash *string
	// EffectiveConfig is the effective config itself, when the agent sent it; drift is checked against it.
	EffectiveConfig *string
	// Capabilities are the agent's AgentCapabilities bits; zero when absent.
	Capabilities uint64
	// AcceptsRemoteConfig is the AcceptsRemoteConfig capability.
	AcceptsRemoteConfig bool
}

// Refusal says why Observe did not take a message; the OpAMP server answers with an error and closes.
type Refusal string

// Refusals of Observe.
const (
	// RefusedGroupFull means the group holds MaxAgents agents on this replica.
	RefusedGroupFull Refusal = "this ManagedCollector already holds as many collectors as it may (spec.maxCollectors); retry later"
)

// Reply is what the OpAMP server must put into its answer to a Report.
type Reply struct {
	// Refused, when set, means the message was not taken: answer with it as an error and close.
	Refused Refusal
	// NewInstanceUID, when set, means the agent's instance UID is bound to another ManagedCollector or
	// EnrollmentToken: answer with it as the agent's new instance UID and take nothing else.
	NewInstanceUID string
	// ReportFullState asks the agent to send its full state: it is unknown to this replica, or a message
	// went missing.
	ReportFullState bool
	// Config is the config to push, nil when the agent runs, or was already sent, the desired config. An
	// empty Config (no file) makes the supervisor stop its collector; a drift heal sends it.
	Config *Revision
	// Restart asks the agent to restart its collector, the last resort of a drift heal.
	Restart bool
}

// Link is the OpAMP server's handle on an agent's live connection. Plain-HTTP agents have none.
type Link interface {
	// Notify asks the connection to fetch the agent's pending config with Registry.Take and send it.
	// It must not block.
	Notify()
	// Close ends the connection.
	Close()
}

// agent is everything the registry knows about one instance UID.
type agent struct {
	uid        string
	membership credential.Membership
	// rank orders the agent in a progressive rollout: a hash of its instance UID, canaries first.
	rank uint64
	// canary says whether the agent matched the rollout's canary selector when its rank was computed.
	canary bool

	described   bool
	description Description
	health      *Health
	// unhealthySince is when the agent last turned unhealthy; zero while healthy or unknown.
	unhealthySince time.Time
	// unhealthyWarned says whether this unhealthy spell already raised its Warning.
	unhealthyWarned bool
	hasConfig       bool
	config          RemoteConfigReport
	effective       string
	caps            uint64
	// acceptsRemoteConfig is false for a read-only member: it is never sent a config.
	acceptsRemoteConfig bool

	connected bool
	// firstSeen is when this replica first heard of the agent; connectedSince when its connection began.
	firstSeen      time.Time
	connectedSince time.Time
	lastSeen       time.Time
	lastSeq        uint64
	link           Link
	// sentHash is the hash pushed over the current connection, so a config is sent once per connection;
	// sentAt is when, so a collector restarted for it is not taken for an unhealthy one.
	sentHash string
	sentAt   time.Time
	// ownMetricsSent is what was last sent about own_metrics over the current connection; ownMetricsOffered
	// whether the agent was ever offered it here, for the one OwnMetricsOffered event.
	ownMetricsSent    OwnMetricsAction
	ownMetricsOffered bool
	// own is the throughput state fed by the agent's own metrics; nil until the first export.
	own *ownMetrics
	// drift is the comparison of the effective config with the desired one, and the heal in progress.
	drift driftState
	// failure is the revision the agent failed during a progressive rollout, and why.
	failure *revisionFailure
}

// display names the agent in an Event: its host or pod, and always its instance UID.
func (a *agent) display() string {
	name := a.description.HostName
	if a.description.PodName != "" {
		name = a.description.PodName
	}
	if name == "" {
		return "instance " + a.uid
	}
	return name + " (instance " + a.uid + ")"
}

func (a *agent) reportsUnhealthy() bool { return a.health != nil && !a.health.Healthy }

func (a *agent) healthy() bool { return a.health != nil && a.health.Healthy }

// readOnly says whether the agent is a read-only member: described, and without AcceptsRemoteConfig.
func (a *agent) readOnly() bool { return a.described && !a.acceptsRemoteConfig }

// applying says whether a config pushed to the agent may still be being applied at now: the supervisor
// restarts its collector for it and reports it unhealthy meanwhile.
func (a *agent) applying(now time.Time, timeout time.Duration) bool {
	if a.sentHash == "" {
		return false
	}
	if a.hasConfig && a.config.Hash == a.sentHash &&
		(a.config.Status == v1alpha1.ConfigStatusApplied || a.config.Status == v1alpha1.ConfigStatusFailed) {
		return false
	}
	return now.Sub(a.sentAt) < timeout+ApplyGrace
}

// needs says whether the revision r must be pushed to the agent over its current connection.
func (a *agent) needs(r *Revision) bool {
	return r != nil && a.connected && a.described && a.acceptsRemoteConfig && a.config.Hash != r.Hash &&
		a.sentHash != r.Hash
}
