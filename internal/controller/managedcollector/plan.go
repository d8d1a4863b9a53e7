package managedcollector

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/collectorconfig"
	"github.com/linkmesh/linkmesh-operator/internal/manifests"
	"github.com/linkmesh/linkmesh-operator/internal/rollout"
)

// plan is what the reconcile decided, purely, from the spec and what it observed: the accepted config,
// the rollout's next state and the Events of its transitions.
type plan struct {
	// configErr is set when spec.config failed validation.
	configErr error
	// accepted is what the supervisor ConfigMap persists; ok is false when no config was ever valid, and
	// then nothing is pushed or created.
	accepted   manifests.Accepted
	acceptedOK bool
	// acceptedHash is the hash of accepted.Config, computed once: the counts, the ConfigMap and the push use it.
	acceptedHash string
	// stableHash is the hash of what the collectors outside a rollout run, before this decision.
	stableHash string
	// rollout and history are status.rollout and status.history; steps are the rollout's.
	rollout *v1alpha1.RolloutStatus
	history []v1alpha1.RevisionHistory
	steps   []intstr.IntOrString
	// events are Events to record.
	events []rollout.Event
	// requeue is when to decide again without any other change.
	requeue time.Duration
}

// planConfig validates spec.config. A valid config becomes the accepted one; an invalid one is refused
// with a Warning, and the last accepted config, kept in the ConfigMap, stays in force.
func planConfig(mc *v1alpha1.ManagedCollector, obs *observed) *plan {
	pl := &plan{steps: rollout.Steps(mc.Spec.Rollout)}
	config := mc.Spec.Config
	if err := collectorconfig.Validate(config); err != nil {
		pl.configErr = err
		prev := apimeta.FindStatusCondition(mc.Status.Conditions, v1alpha1.ConditionConfigValid)
		if prev == nil || prev.Status != metav1.ConditionFalse || prev.Message != configMessage(err) || mc.Status.ObservedGeneration != mc.Generation {
			pl.events = append(pl.events, rollout.Event{Type: corev1.EventTypeWarning, Reason: v1alpha1.EventConfigInvalid,
				Message: "spec.config refused, nothing was changed: " + configMessage(err)})
		}
		if !obs.acceptedOK {
			return pl
		}
		config = obs.accepted.Config
	}
	pl.acceptedOK = true
	pl.accepted = manifests.Accepted{Config: config}
	pl.acceptedHash = collectorconfig.Hash(config)
	if obs.acceptedOK {
		stable := obs.accepted.Config
		if obs.accepted.Rollout != nil {
			stable = obs.accepted.Rollout.Stable
		}
		if stable == config {
			pl.stableHash = pl.acceptedHash
		} else {
			pl.stableHash = collectorconfig.Hash(stable)
		}
		pl.accepted.Rollout = &manifests.AcceptedRollout{Stable: stable}
	}
	return pl
}

// planRollout decides the rollout from what the collectors did, observed over every replica.
func (pl *plan) planRollout(mc *v1alpha1.ManagedCollector, obs *observed, now time.Time) {
	if !pl.acceptedOK {
		pl.accepted.Rollout = nil
		return
	}
	var observedRollout v1alpha1.ShareRollout
	if obs.fleet.Rollout != nil {
		observedRollout = *obs.fleet.Rollout
	}
	d := rollout.Decide(rollout.Input{
		Spec:     mc.Spec.Rollout,
		Revision: pl.acceptedHash,
		Stable:   pl.stableHash,
		Previous: mc.Status.Rollout,
		History:  mc.Status.History,
		Observed: observedRollout,
		Now:      now,
	})
	pl.rollout, pl.history, pl.requeue = d.Status, d.History, d.RequeueAfter
	pl.events = append(pl.events, d.Events...)
	if !d.Active || pl.accepted.Rollout == nil {
		pl.accepted.Rollout = nil
		return
	}
	pl.accepted.Rollout.Phase = d.Status.Phase
	pl.accepted.Rollout.Threshold = d.Threshold
	pl.accepted.Rollout.StepStarted = d.StepStarted
	pl.accepted.Rollout.Superseded = d.Superseded
}

// modeOf is spec.mode with its default.
func modeOf(mc *v1alpha1.ManagedCollector) v1alpha1.CollectorMode { return manifests.Mode(mc) }
