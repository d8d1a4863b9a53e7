package managedcollector

import (
	"context"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/bounded"
	"github.com/linkmesh/linkmesh-operator/internal/fleet"
	"github.com/linkmesh/linkmesh-operator/internal/index"
	"github.com/linkmesh/linkmesh-operator/internal/manifests"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
)

// maxConditionMessage keeps a long list of config problems readable in kubectl describe.
const maxConditionMessage = 1024

// computeStatus fills mc.Status from what the phases observed and from the fleet. It reads from the cache
// only; the single write is patchStatus.
func (r *Reconciler) computeStatus(ctx context.Context, mc *v1alpha1.ManagedCollector, st *observed) {
	s := &mc.Status
	s.ObservedGeneration = mc.Generation
	s.ConfigHash = st.acceptedHash

	var snap fleet.Snapshot
	if r.Fleet != nil {
		snap = r.Fleet.Snapshot(client.ObjectKeyFromObject(mc), st.acceptedHash)
		for _, e := range snap.Events {
			r.Recorder.Eventf(mc, nil, e.Type, e.Reason, "OpAMP", "%s", e.Message)
		}
	}
	counts := snap.Counts
	counts.Desired = r.desiredAgents(ctx, mc, st)
	s.Counts = counts
	s.Agents = snap.Agents
	s.Throughput = snap.Throughput
	s.Connected = fmt.Sprintf("%d/%d", counts.Connected, counts.Desired)

	gen := mc.Generation
	set := func(t string, ok bool, reason, msg string) {
		status := metav1.ConditionFalse
		if ok {
			status = metav1.ConditionTrue
		}
		apimeta.SetStatusCondition(&s.Conditions, metav1.Condition{
			Type: t, Status: status, Reason: reason, Message: bounded.Truncate(msg, maxConditionMessage), ObservedGeneration: gen,
		})
	}

	if st.configErr != nil {
		set(v1alpha1.ConditionConfigValid, false, v1alpha1.ReasonConfigInvalid, configMessage(st.configErr))
	} else {
		set(v1alpha1.ConditionConfigValid, true, v1alpha1.ReasonConfigValid, "spec.config is valid")
	}

	if counts.Connected == 0 {
		set(v1alpha1.ConditionConnected, false, v1alpha1.ReasonNoAgentsConnected, "no collector is connected")
	} else {
		set(v1alpha1.ConditionConnected, true, v1alpha1.ReasonAgentsConnected,
			fmt.Sprintf("%d of %d collectors connected", counts.Connected, counts.Desired))
	}

	switch {
	case counts.Connected == 0:
		set(v1alpha1.ConditionConfigApplied, false, v1alpha1.ReasonNoAgentsConnected, "no collector is connected")
	case counts.ConfigFailed > 0:
		set(v1alpha1.ConditionConfigApplied, false, v1alpha1.ReasonConfigFailed,
			fmt.Sprintf("%d of %d connected collectors failed to apply the config%s", counts.ConfigFailed, counts.Connected, firstMessage(snap.Agents, v1alpha1.ConfigStatusFailed)))
	case counts.ConfigDrifted > 0:
		set(v1alpha1.ConditionConfigApplied, false, v1alpha1.ReasonConfigDrift,
			fmt.Sprintf("%d of %d connected collectors report the config applied but do not run it; re-applying%s", counts.ConfigDrifted, counts.Connected, firstMessage(snap.Agents, v1alpha1.ConfigStatusDrifted)))
	case counts.ConfigApplied < counts.Connected:
		set(v1alpha1.ConditionConfigApplied, false, v1alpha1.ReasonConfigApplying,
			fmt.Sprintf("%d of %d connected collectors run the current config", counts.ConfigApplied, counts.Connected))
	default:
		set(v1alpha1.ConditionConfigApplied, true, v1alpha1.ReasonConfigApplied,
			fmt.Sprintf("all %d connected collectors run the current config", counts.Connected))
	}

	switch {
	case counts.Connected == 0:
		set(v1alpha1.ConditionHealthy, false, v1alpha1.ReasonNoAgentsConnected, "no collector is connected")
	case counts.Healthy < counts.Connected:
		set(v1alpha1.ConditionHealthy, false, v1alpha1.ReasonUnhealthy,
			fmt.Sprintf("%d of %d connected collectors are unhealthy", counts.Connected-counts.Healthy, counts.Connected))
	default:
		set(v1alpha1.ConditionHealthy, true, v1alpha1.ReasonAllHealthy,
			fmt.Sprintf("all %d connected collectors are healthy", counts.Connected))
	}

	ready, reason, msg := readiness(mc, st, counts)
	set(v1alpha1.ConditionReady, ready, reason, msg)
}

// readiness is what a user means by ready: the config is valid, collectors are connected, and every
// connected collector runs the desired config and is healthy. In DaemonSet mode every scheduled pod must be
// connected too.
func readiness(mc *v1alpha1.ManagedCollector, st *observed, c v1alpha1.AgentCounts) (bool, string, string) {
	switch {
	case st.applyErr != nil:
		return false, v1alpha1.ReasonApplyFailed, "applying owned objects failed: " + st.applyErr.Error()
	case st.configErr != nil:
		return false, v1alpha1.ReasonConfigInvalid, "spec.config is invalid; collectors keep the last accepted config"
	case c.Connected == 0:
		return false, v1alpha1.ReasonNoAgentsConnected, "waiting for a collector to connect"
	case c.ConfigFailed > 0:
		return false, v1alpha1.ReasonConfigFailed, fmt.Sprintf("%d collectors failed to apply the config", c.ConfigFailed)
	case c.ConfigDrifted > 0:
		return false, v1alpha1.ReasonConfigDrift, fmt.Sprintf("%d collectors do not run the config they report applied; re-applying it", c.ConfigDrifted)
	case c.ConfigApplied < c.Connected:
		return false, v1alpha1.ReasonConfigApplying, fmt.Sprintf("%d of %d collectors run the current config", c.ConfigApplied, c.Connected)
	case c.Healthy < c.Connected:
		return false, v1alpha1.ReasonUnhealthy, fmt.Sprintf("%d collectors are unhealthy", c.Connected-c.Healthy)
	case manifests.Mode(mc) == v1alpha1.ModeDaemonSet && st.daemonSet != nil && c.Connected < st.daemonSet.Status.DesiredNumberScheduled:
		return false, v1alpha1.ReasonAgentsMissing, fmt.Sprintf("%d of %d scheduled pods are connected", c.Connected, st.daemonSet.Status.DesiredNumberScheduled)
	}
	return true, v1alpha1.ReasonReady, fmt.Sprintf("%d collectors run the current config and are healthy", c.Connected)
}

// desiredAgents is the DaemonSet's scheduled pods plus the hosts that redeemed a token for this group.
func (r *Reconciler) desiredAgents(ctx context.Context, mc *v1alpha1.ManagedCollector, st *observed) int32 {
	var n int32
	if st.daemonSet != nil {
		n = st.daemonSet.Status.DesiredNumberScheduled
	}
	tokens := &v1alpha1.EnrollmentTokenList{}
	if err := r.List(ctx, tokens, client.InNamespace(mc.Namespace), client.MatchingFields{index.TokenCollector: mc.Name}); err == nil {
		for _, t := range tokens.Items {
			if t.Status.Phase == v1alpha1.TokenRedeemed {
				n++
			}
		}
	}
	return n
}

// patchStatus writes the status once, and only if it changed.
func (r *Reconciler) patchStatus(ctx context.Context, base, mc *v1alpha1.ManagedCollector) error {
	if equality.Semantic.DeepEqual(base.Status, mc.Status) {
		return nil
	}
	if err := r.Status().Patch(ctx, mc, client.MergeFrom(base), client.FieldOwner(naming.FieldOwner)); err != nil {
		return fmt.Errorf("writing status: %w", err)
	}
	return nil
}

func findCondition(conds []metav1.Condition, t string) *metav1.Condition {
	return apimeta.FindStatusCondition(conds, t)
}

func configMessage(err error) string {
	return bounded.Truncate(err.Error(), maxConditionMessage)
}

func firstMessage(agents []v1alpha1.AgentStatus, status v1alpha1.ConfigStatus) string {
	for _, a := range agents {
		if a.ConfigStatus == status && a.Message != "" {
			return ": " + strings.TrimSpace(a.Message)
		}
	}
	return ""
}
