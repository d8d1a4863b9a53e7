package managedcollector

import (
	"fmt"
	"strings"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/bounded"
)

// maxConditionMessage keeps a long list of config problems readable in kubectl describe.
const maxConditionMessage = 1024

// computeStatus fills mc.Status from what the reconcile observed and decided. It is pure: every read
// happened in observe, every write happens after it.
func computeStatus(mc *v1alpha1.ManagedCollector, obs *observed, pl *plan, applyErr error) {
	s := &mc.Status
	s.ObservedGeneration = mc.Generation
	s.ConfigHash = pl.acceptedHash
	counts := obs.fleet.Counts
	counts.Desired = obs.desired()
	s.Counts = counts
	s.Agents = obs.fleet.Agents
	s.Throughput = obs.fleet.Throughput
	s.Connected = connectedColumn(counts)
	s.Rollout = pl.rollout
	s.History = pl.history

	in := conditionInput{
		mode:         modeOf(mc),
		configErr:    pl.configErr,
		applyErr:     applyErr,
		counts:       counts,
		firstFailure: firstMessage(s.Agents, v1alpha1.ConfigStatusFailed),
		firstDrift:   firstMessage(s.Agents, v1alpha1.ConfigStatusDrifted),
		rollout:      pl.rollout,
		steps:        len(pl.steps),
	}
	if obs.daemonSet != nil {
		scheduled := obs.daemonSet.Status.DesiredNumberScheduled
		in.scheduled = &scheduled
	}
	valid, conn, applied, health := configValid(in), connected(in), configApplied(in), healthy(in)
	readyCond := ready(in, valid, conn, applied, health)
	for _, c := range []metav1.Condition{valid, conn, applied, health, readyCond, reconciling(readyCond), stalled(readyCond)} {
		c.ObservedGeneration = mc.Generation
		c.Message = bounded.Truncate(c.Message, maxConditionMessage)
		apimeta.SetStatusCondition(&s.Conditions, c)
	}
}

// connectedColumn is status.connected, the printer column: connected/desired, or only the connected
// count while nothing is desired, which a "1/0" would misstate.
func connectedColumn(c v1alpha1.AgentCounts) string {
	if c.Desired == 0 {
		return fmt.Sprint(c.Connected)
	}
	return fmt.Sprintf("%d/%d", c.Connected, c.Desired)
}

func configMessage(err error) string {
	return bounded.Truncate(err.Error(), maxConditionMessage)
}

func firstMessage(agents []v1alpha1.AgentStatus, status v1alpha1.ConfigStatus) string {
	for _, a := range agents {
		if a.ConfigStatus == status && a.Message != "" {
			return strings.TrimSpace(a.Message)
		}
	}
	return ""
}

func readyOf(mc *v1alpha1.ManagedCollector) *metav1.Condition {
	return apimeta.FindStatusCondition(mc.Status.Conditions, v1alpha1.ConditionReady)
}
