package managedcollector

import (
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
)

// The conditions of a ManagedCollector, each from one pure function of what the reconcile observed, and
// Ready from them in one ordered policy (ready). Messages hold no generated names or timestamps, so an
// unchanged fleet renders unchanged conditions.

// conditionInput is everything the conditions are computed from.
type conditionInput struct {
	mode v1alpha1.CollectorMode
	// configErr is spec.config's validation error; applyErr an API error applying owned objects.
	configErr, applyErr error
	// counts are over every replica's collectors; Desired is filled.
	counts v1alpha1.AgentCounts
	// scheduled is the DaemonSet's desiredNumberScheduled; nil without a DaemonSet.
	scheduled *int32
	// firstFailure and firstDrift are the messages of the first failed and drifted agents listed.
	firstFailure, firstDrift string
	// rollout is the state of a progressive rollout; nil with AllAtOnce.
	rollout *v1alpha1.RolloutStatus
	// steps is the number of steps of the rollout.
	steps int
}

// managed are the connected collectors that accept remote config.
func (in conditionInput) managed() int32 { return in.counts.Connected - in.counts.ReadOnly }

// readOnlyNote says how many read-only members there are, for the condition messages; empty without any.
func (in conditionInput) readOnlyNote() string {
	switch n := in.counts.ReadOnly; n {
	case 0:
		return ""
	case 1:
		return "; 1 read-only member"
	default:
		return fmt.Sprintf("; %d read-only members", n)
	}
}

// agree is one when n is 1, else many with n in it: a message's noun and verb agree with the count.
func agree(n int32, one, many string) string {
	if n == 1 {
		return one
	}
	return fmt.Sprintf(many, n)
}

func cond(t string, ok bool, reason, msg string) metav1.Condition {
	status := metav1.ConditionFalse
	if ok {
		status = metav1.ConditionTrue
	}
	return metav1.Condition{Type: t, Status: status, Reason: reason, Message: msg}
}

func configValid(in conditionInput) metav1.Condition {
	if in.configErr != nil {
		return cond(v1alpha1.ConditionConfigValid, false, v1alpha1.ReasonConfigInvalid, configMessage(in.configErr))
	}
	return cond(v1alpha1.ConditionConfigValid, true, v1alpha1.ReasonConfigValid, "spec.config is valid")
}

func connected(in conditionInput) metav1.Condition {
	c := in.counts
	if c.Connected == 0 {
		return cond(v1alpha1.ConditionConnected, false, v1alpha1.ReasonNoAgentsConnected, "no collector is connected")
	}
	return cond(v1alpha1.ConditionConnected, true, v1alpha1.ReasonAgentsConnected, connectedText(in))
}

// connectedText never shows a denominator that misleads: with nothing desired it says why.
func connectedText(in conditionInput) string {
	c := in.counts
	managed := in.managed()
	switch {
	case c.Desired > 0:
		return fmt.Sprintf("%d of %d expected collectors connected%s", managed, c.Desired, in.readOnlyNote())
	case in.mode == v1alpha1.ModeDaemonSet && in.scheduled != nil:
		return fmt.Sprintf("%d connected%s; the DaemonSet has no scheduled pods", managed, in.readOnlyNote())
	default:
		return fmt.Sprintf("%d connected%s; no EnrollmentToken is redeemed", managed, in.readOnlyNote())
	}
}

func configApplied(in conditionInput) metav1.Condition {
	c := in.counts
	managed := in.managed()
	note := in.readOnlyNote()
	ro := in.rollout
	switch {
	case c.Connected == 0:
		return cond(v1alpha1.ConditionConfigApplied, false, v1alpha1.ReasonNoAgentsConnected, "no collector is connected")
	case managed == 0:
		return cond(v1alpha1.ConditionConfigApplied, true, v1alpha1.ReasonReadOnlyMembers,
			fmt.Sprintf("none of the %d connected collectors accepts remote config: they are read-only members", c.Connected))
	case ro != nil && ro.Phase == v1alpha1.RolloutRolledBack:
		return cond(v1alpha1.ConditionConfigApplied, false, v1alpha1.ReasonRolledBack,
			fmt.Sprintf("the rollout of config %s failed and was rolled back: collectors run %s; fix or revert spec.config%s",
				short(ro.Revision), short(ro.StableRevision), failureText(ro)))
	case ro != nil && ro.Phase == v1alpha1.RolloutHalted:
		return cond(v1alpha1.ConditionConfigApplied, false, v1alpha1.ReasonRolloutHalted,
			fmt.Sprintf("the rollout of config %s halted at step %d of %d: %d collectors run it, no further collector gets it; fix or revert spec.config%s",
				short(ro.Revision), ro.Step+1, in.steps, ro.Updated, failureText(ro)))
	case c.ConfigFailed > 0:
		return cond(v1alpha1.ConditionConfigApplied, false, v1alpha1.ReasonConfigFailed,
			fmt.Sprintf("%d of %d connected collectors failed to apply the config%s%s", c.ConfigFailed, managed, note, prefixed(in.firstFailure)))
	case c.ConfigDrifted > 0:
		return cond(v1alpha1.ConditionConfigApplied, false, v1alpha1.ReasonConfigDrift,
			fmt.Sprintf("%d of %d connected collectors report the config applied but do not run it; re-applying%s%s", c.ConfigDrifted, managed, note, prefixed(in.firstDrift)))
	case ro != nil && ro.Phase == v1alpha1.RolloutPaused:
		return cond(v1alpha1.ConditionConfigApplied, false, v1alpha1.ReasonRolloutPaused,
			fmt.Sprintf("the rollout of config %s is paused at step %d of %d (spec.rollout.paused): %d of %d connected collectors run it%s",
				short(ro.Revision), ro.Step+1, in.steps, c.ConfigApplied, managed, note))
	case ro != nil && ro.Phase == v1alpha1.RolloutProgressing:
		return cond(v1alpha1.ConditionConfigApplied, false, v1alpha1.ReasonRollingOut,
			fmt.Sprintf("rolling out config %s, step %d of %d: %d of %d connected collectors run it%s",
				short(ro.Revision), ro.Step+1, in.steps, c.ConfigApplied, managed, note))
	case c.ConfigApplied < managed:
		return cond(v1alpha1.ConditionConfigApplied, false, v1alpha1.ReasonConfigApplying,
			fmt.Sprintf("%d of %d connected collectors run the current config%s", c.ConfigApplied, managed, note))
	}
	return cond(v1alpha1.ConditionConfigApplied, true, v1alpha1.ReasonConfigApplied,
		agree(managed, "the connected collector runs", "all %d connected collectors run")+" the current config"+note)
}

func healthy(in conditionInput) metav1.Condition {
	c := in.counts
	switch {
	case c.Connected == 0:
		return cond(v1alpha1.ConditionHealthy, false, v1alpha1.ReasonNoAgentsConnected, "no collector is connected")
	case c.Healthy < c.Connected:
		return cond(v1alpha1.ConditionHealthy, false, v1alpha1.ReasonUnhealthy,
			fmt.Sprintf("%d of %d connected collectors are unhealthy", c.Connected-c.Healthy, c.Connected))
	}
	return cond(v1alpha1.ConditionHealthy, true, v1alpha1.ReasonAllHealthy,
		agree(c.Connected, "the connected collector is", "all %d connected collectors are")+" healthy")
}

// ready is the one Ready policy, what a user means by ready: the owned objects are applied, the config is
// valid, collectors are connected, every managed one runs the current config and every one is healthy,
// and in DaemonSet mode every scheduled pod is connected. The first rule that fails gives the reason, in
// this order; the sub-conditions are computed first and Ready carries the failing one's reason.
func ready(in conditionInput, valid, conn, applied, health metav1.Condition) metav1.Condition {
	switch {
	case in.applyErr != nil:
		return cond(v1alpha1.ConditionReady, false, v1alpha1.ReasonApplyFailed, "applying owned objects failed: "+in.applyErr.Error())
	case valid.Status != metav1.ConditionTrue:
		return cond(v1alpha1.ConditionReady, false, valid.Reason, "spec.config is invalid; collectors keep the last accepted config")
	case conn.Status != metav1.ConditionTrue:
		return cond(v1alpha1.ConditionReady, false, conn.Reason, "waiting for a collector to connect")
	case applied.Status != metav1.ConditionTrue:
		return cond(v1alpha1.ConditionReady, false, applied.Reason, applied.Message)
	case health.Status != metav1.ConditionTrue:
		return cond(v1alpha1.ConditionReady, false, health.Reason, health.Message)
	}
	if missing := in.missingPods(); missing != "" {
		return cond(v1alpha1.ConditionReady, false, v1alpha1.ReasonAgentsMissing, missing)
	}
	if in.managed() == 0 {
		return cond(v1alpha1.ConditionReady, true, v1alpha1.ReasonReadOnlyMembers,
			agree(in.counts.Connected, "the connected collector is a read-only member", "all %d connected collectors are read-only members")+
				" and healthy; spec.config runs on none of them")
	}
	return cond(v1alpha1.ConditionReady, true, v1alpha1.ReasonReady,
		agree(in.managed(), "1 collector runs the current config and is", "%d collectors run the current config and are")+" healthy"+in.readOnlyNote())
}

// missingPods says how many scheduled pods of the DaemonSet are not connected; empty when none is missing.
func (in conditionInput) missingPods() string {
	if in.mode != v1alpha1.ModeDaemonSet || in.scheduled == nil || in.managed() >= *in.scheduled {
		return ""
	}
	return fmt.Sprintf("%d of %d scheduled pods are connected", in.managed(), *in.scheduled)
}

// reconciling and stalled are kstatus' conditions: Reconciling while the operator or the collectors are
// converging on the spec without a person's help, Stalled when they cannot without one.
func reconciling(readyCond metav1.Condition) metav1.Condition {
	switch readyCond.Reason {
	case v1alpha1.ReasonRollingOut, v1alpha1.ReasonRolloutPaused, v1alpha1.ReasonConfigApplying,
		v1alpha1.ReasonConfigDrift, v1alpha1.ReasonAgentsMissing:
		return cond(v1alpha1.ConditionReconciling, true, readyCond.Reason, readyCond.Message)
	}
	return cond(v1alpha1.ConditionReconciling, false, v1alpha1.ReasonReconciled, "nothing in progress")
}

func stalled(readyCond metav1.Condition) metav1.Condition {
	switch readyCond.Reason {
	case v1alpha1.ReasonRolledBack, v1alpha1.ReasonRolloutHalted, v1alpha1.ReasonConfigInvalid,
		v1alpha1.ReasonConfigFailed, v1alpha1.ReasonApplyFailed:
		return cond(v1alpha1.ConditionStalled, true, readyCond.Reason, readyCond.Message)
	}
	return cond(v1alpha1.ConditionStalled, false, v1alpha1.ReasonReconciled, "not stalled")
}

func prefixed(msg string) string {
	if msg == "" {
		return ""
	}
	return ": " + strings.TrimSpace(msg)
}

func failureText(ro *v1alpha1.RolloutStatus) string {
	f := ro.LastFailure
	if f == nil {
		return ""
	}
	who := f.Collector
	if who == "" {
		who = "instance " + f.InstanceUID
	}
	msg := fmt.Sprintf("; last failure: %s, %s", who, f.Reason)
	if f.Message != "" {
		msg += ": " + f.Message
	}
	return msg
}

func short(hash string) string {
	if len(hash) > 12 {
		return hash[:12]
	}
	return hash
}
