package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// RolloutStrategy says how a new spec.config reaches the collectors.
// +kubebuilder:validation:Enum=AllAtOnce;Progressive
type RolloutStrategy string

const (
	// RolloutAllAtOnce pushes a new config to every collector at once.
	RolloutAllAtOnce RolloutStrategy = "AllAtOnce"
	// RolloutProgressive pushes a new config step by step, baking each step, and halts on failures.
	RolloutProgressive RolloutStrategy = "Progressive"
)

// RolloutFailurePolicy says what a progressive rollout does when too many collectors fail the new config.
// +kubebuilder:validation:Enum=Rollback;Pause
type RolloutFailurePolicy string

const (
	// RolloutFailureRollback sends every collector that got the new config the stable one again.
	RolloutFailureRollback RolloutFailurePolicy = "Rollback"
	// RolloutFailurePause offers the new config to no further collector; those that have it keep it.
	RolloutFailurePause RolloutFailurePolicy = "Pause"
)

// Defaults of a progressive rollout.
const (
	// DefaultBakeTime is how long a step's collectors stay applied and healthy before the next step.
	DefaultBakeTime = "60s"
)

// DefaultRolloutSteps are the steps of a progressive rollout without spec.rollout.steps.
var DefaultRolloutSteps = []intstr.IntOrString{intstr.FromInt32(1), intstr.FromString("10%"), intstr.FromString("100%")}

// RolloutSpec declares how a new spec.config is rolled out.
type RolloutSpec struct {
	// strategy is AllAtOnce (the default: every collector gets a new config at once) or Progressive.
	// +optional
	// +kubebuilder:default=AllAtOnce
	Strategy RolloutStrategy `json:"strategy,omitempty"`

	// steps are how many collectors run the new config at each step of a progressive rollout: counts
	// first, then percentages of the connected collectors that accept remote config, each ascending; the
	// last step is "100%". Defaults to [1, "10%", "100%"].
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=5
	// +kubebuilder:validation:XValidation:rule="self.all(s, type(s) == int ? s >= 1 : (type(s) == string && s.matches('^([1-9][0-9]?|100)%$')))",message="each step is a count of at least 1 or a percentage from 1% to 100%"
	// +kubebuilder:validation:XValidation:rule="self[self.size() - 1] == '100%'",message="the last step must be \"100%\""
	// +kubebuilder:validation:XValidation:rule="self.map(s, type(s) == int ? 0 : 1).isSorted() && self.filter(s, type(s) == int).isSorted() && self.filter(s, type(s) == string).map(s, int(s.replace('%', ''))).isSorted()",message="steps must ascend: counts first, then percentages"
	Steps []intstr.IntOrString `json:"steps,omitempty"`

	// bakeTime is how long the collectors of a step must stay applied and healthy before the next step
	// starts; from 0s to 24h, default 60s.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s') && duration(self) <= duration('24h')",message="bakeTime must be between 0s and 24h"
	BakeTime *metav1.Duration `json:"bakeTime,omitempty"`

	// maxFailures is how many of the collectors offered the new config may fail it, a count or a
	// percentage of them, before the rollout halts. Defaults to 0.
	// +optional
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 0 : self.matches('^([0-9]|[1-9][0-9]|100)%$')",message="maxFailures is a count of at least 0 or a percentage from 0% to 100%"
	MaxFailures *intstr.IntOrString `json:"maxFailures,omitempty"`

	// onFailure is Rollback (the default: collectors that got the new config run the stable one again) or
	// Pause (no further collector gets it; those that have it keep it).
	// +optional
	// +kubebuilder:default=Rollback
	OnFailure RolloutFailurePolicy `json:"onFailure,omitempty"`

	// paused, when true, holds a progressive rollout where it is; false resumes it.
	// +optional
	Paused bool `json:"paused,omitempty"`

	// canarySelector selects collectors by their non-identifying attributes (for example
	// linkmesh.environment: staging); matching collectors make up the first steps.
	// +optional
	CanarySelector *metav1.LabelSelector `json:"canarySelector,omitempty"`
}

// RolloutPhase is where a progressive rollout stands.
// +kubebuilder:validation:Enum=Progressing;Paused;Halted;RolledBack;Complete
type RolloutPhase string

const (
	// RolloutProgressing means steps are being rolled out and baked.
	RolloutProgressing RolloutPhase = "Progressing"
	// RolloutPaused means spec.rollout.paused holds the rollout.
	RolloutPaused RolloutPhase = "Paused"
	// RolloutHalted means too many collectors failed and onFailure is Pause: nobody else gets the revision.
	RolloutHalted RolloutPhase = "Halted"
	// RolloutRolledBack means too many collectors failed and every collector runs the stable revision again;
	// the revision is not offered again until spec.config changes.
	RolloutRolledBack RolloutPhase = "RolledBack"
	// RolloutComplete means every collector was offered the revision, which is now the stable one.
	RolloutComplete RolloutPhase = "Complete"
)

// RolloutFailure is the last collector that failed a revision.
type RolloutFailure struct {
	// instanceUID of the collector.
	// +kubebuilder:validation:MaxLength=64
	InstanceUID string `json:"instanceUID"`
	// collector names the collector: its pod or host.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Collector string `json:"collector,omitempty"`
	// reason is ConfigFailed, Unhealthy, ConfigDrift, Disconnected or DataFailing.
	// +kubebuilder:validation:MaxLength=64
	Reason string `json:"reason"`
	// message says what the collector reported; never a secret.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

// Reasons a collector fails a revision, in RolloutFailure.reason.
const (
	// FailureConfigFailed means the collector reported the revision FAILED.
	FailureConfigFailed = "ConfigFailed"
	// FailureUnhealthy means the collector stayed unhealthy while running the revision.
	FailureUnhealthy = "Unhealthy"
	// FailureConfigDrift means the collector ran without part of the revision and healing did not fix it.
	FailureConfigDrift = "ConfigDrift"
	// FailureDisconnected means the collector disconnected after it was offered the revision and did not come
	// back within the bake time.
	FailureDisconnected = "Disconnected"
	// FailureDataFailing means most items failed to export or were refused while the collector ran the
	// revision, by its own metrics.
	FailureDataFailing = "DataFailing"
)

// RolloutStatus is the state of a progressive rollout. It lives in the API so that a restart or a
// failover of the operator continues from the same step.
type RolloutStatus struct {
	// revision is the config hash being rolled out.
	// +kubebuilder:validation:MaxLength=128
	Revision string `json:"revision"`
	// stableRevision is the last config hash whose rollout completed; collectors outside the rollout's
	// steps run it.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	StableRevision string `json:"stableRevision,omitempty"`
	// phase is Progressing, Paused, Halted, RolledBack or Complete.
	Phase RolloutPhase `json:"phase"`
	// step is the index in spec.rollout.steps of the current step.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Step int32 `json:"step"`
	// target is how many collectors the current step offers the revision to.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Target int32 `json:"target,omitempty"`
	// updated is the number of collectors that run the revision, applied and healthy.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Updated int32 `json:"updated"`
	// failed is the number of collectors that failed the revision.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Failed int32 `json:"failed"`
	// lastFailure is the last collector that failed the revision.
	// +optional
	LastFailure *RolloutFailure `json:"lastFailure,omitempty"`
	// threshold is the rank, as 16 hex digits, below which a collector is in the rollout's steps; collectors
	// are ranked by a hash of their instance UID, canaries first, so every replica decides alike.
	// +optional
	// +kubebuilder:validation:Pattern=`^[0-9a-f]{16}$`
	Threshold string `json:"threshold,omitempty"`
	// startedAt is when the rollout of the revision began.
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`
	// stepStartedAt is when the current step began; collectors that join later run the stable revision.
	// +optional
	StepStartedAt *metav1.Time `json:"stepStartedAt,omitempty"`
	// bakeStartedAt is when every collector of the current step first ran the revision, applied and
	// healthy; the next step starts bakeTime later.
	// +optional
	BakeStartedAt *metav1.Time `json:"bakeStartedAt,omitempty"`
	// completedAt is when the rollout completed or was rolled back.
	// +optional
	CompletedAt *metav1.Time `json:"completedAt,omitempty"`
}

// RevisionOutcome is how a revision of spec.config ended.
// +kubebuilder:validation:Enum=Progressing;Complete;RolledBack;Halted;Superseded
type RevisionOutcome string

const (
	// OutcomeProgressing is a revision being rolled out.
	OutcomeProgressing RevisionOutcome = "Progressing"
	// OutcomeComplete is a revision every collector was offered.
	OutcomeComplete RevisionOutcome = "Complete"
	// OutcomeRolledBack is a revision that failed and was rolled back; it is not offered again.
	OutcomeRolledBack RevisionOutcome = "RolledBack"
	// OutcomeHalted is a revision that failed with onFailure Pause.
	OutcomeHalted RevisionOutcome = "Halted"
	// OutcomeSuperseded is a revision whose rollout a newer spec.config replaced.
	OutcomeSuperseded RevisionOutcome = "Superseded"
)

// MaxRevisionHistory bounds status.history.
const MaxRevisionHistory = 10

// RevisionHistory is one accepted revision of spec.config.
type RevisionHistory struct {
	// hash of the config.
	// +kubebuilder:validation:MaxLength=128
	Hash string `json:"hash"`
	// acceptedAt is when the operator first accepted it.
	AcceptedAt metav1.Time `json:"acceptedAt"`
	// outcome is Progressing, Complete, RolledBack, Halted or Superseded.
	Outcome RevisionOutcome `json:"outcome"`
}

// ShareRollout is what one replica's collectors did with a rollout's revision.
type ShareRollout struct {
	// revision is the hash these figures are about.
	// +kubebuilder:validation:MaxLength=128
	Revision string `json:"revision"`
	// candidates are the connected collectors that accept remote config.
	// +optional
	Candidates int32 `json:"candidates,omitempty"`
	// canaries are the candidates that match spec.rollout.canarySelector.
	// +optional
	Canaries int32 `json:"canaries,omitempty"`
	// lowestRanks are the lowest ranks of the candidates, ascending, as 16 hex digits.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:Pattern=`^[0-9a-f]{16}$`
	LowestRanks []string `json:"lowestRanks,omitempty"`
	// offered is the number of collectors sent the revision.
	// +optional
	Offered int32 `json:"offered,omitempty"`
	// updated is the number of offered collectors that run it, applied and healthy.
	// +optional
	Updated int32 `json:"updated,omitempty"`
	// failed is the number of offered collectors that failed it.
	// +optional
	Failed int32 `json:"failed,omitempty"`
	// lastFailure is the last of them.
	// +optional
	LastFailure *RolloutFailure `json:"lastFailure,omitempty"`
}
