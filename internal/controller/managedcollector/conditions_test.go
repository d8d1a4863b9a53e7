package managedcollector

import (
	"errors"
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
)

// TestReadyPolicy table-tests every reason Ready can give, in the policy's order, with the kstatus
// conditions that follow from it.
func TestReadyPolicy(t *testing.T) {
	three := int32(3)
	zero := int32(0)
	good := v1alpha1.AgentCounts{Desired: 3, Connected: 3, Healthy: 3, ConfigApplied: 3}
	with := func(mut func(*v1alpha1.AgentCounts)) v1alpha1.AgentCounts {
		c := good
		mut(&c)
		return c
	}
	rolling := &v1alpha1.RolloutStatus{Revision: "r2", StableRevision: "r1", Phase: v1alpha1.RolloutProgressing}
	for _, tc := range []struct {
		name        string
		in          conditionInput
		ready       bool
		reason      string
		message     string
		reconciling bool
		stalled     bool
	}{
		{name: "apply failed", in: conditionInput{applyErr: errors.New("forbidden"), counts: good},
			reason: v1alpha1.ReasonApplyFailed, message: "applying owned objects failed: forbidden", stalled: true},
		{name: "config invalid", in: conditionInput{configErr: errors.New("no service"), counts: good},
			reason: v1alpha1.ReasonConfigInvalid, stalled: true},
		{name: "nothing connected", in: conditionInput{counts: v1alpha1.AgentCounts{Desired: 3}},
			reason: v1alpha1.ReasonNoAgentsConnected, message: "waiting for a collector to connect"},
		{name: "a collector failed the config", in: conditionInput{counts: with(func(c *v1alpha1.AgentCounts) { c.ConfigApplied, c.ConfigFailed = 2, 1 }), firstFailure: "unknown type kafka"},
			reason: v1alpha1.ReasonConfigFailed, message: "1 of 3 connected collectors failed to apply the config: unknown type kafka", stalled: true},
		{name: "rolled back", in: conditionInput{counts: with(func(c *v1alpha1.AgentCounts) { c.ConfigApplied = 0 }), steps: 3,
			rollout: &v1alpha1.RolloutStatus{Revision: "r2", StableRevision: "r1", Phase: v1alpha1.RolloutRolledBack,
				LastFailure: &v1alpha1.RolloutFailure{InstanceUID: "u", Collector: "web-1", Reason: v1alpha1.FailureUnhealthy}}},
			reason: v1alpha1.ReasonRolledBack, stalled: true,
			message: "the rollout of config r2 failed and was rolled back: collectors run r1; fix or revert spec.config; last failure: web-1, Unhealthy"},
		{name: "halted", in: conditionInput{counts: with(func(c *v1alpha1.AgentCounts) { c.ConfigApplied = 1 }), steps: 3,
			rollout: &v1alpha1.RolloutStatus{Revision: "r2", Phase: v1alpha1.RolloutHalted, Updated: 1}},
			reason: v1alpha1.ReasonRolloutHalted, stalled: true},
		{name: "drift", in: conditionInput{counts: with(func(c *v1alpha1.AgentCounts) { c.ConfigApplied, c.ConfigDrifted = 2, 1 })},
			reason: v1alpha1.ReasonConfigDrift, reconciling: true},
		{name: "paused", in: conditionInput{counts: with(func(c *v1alpha1.AgentCounts) { c.ConfigApplied = 1 }), steps: 3,
			rollout: &v1alpha1.RolloutStatus{Revision: "r2", Phase: v1alpha1.RolloutPaused}},
			reason: v1alpha1.ReasonRolloutPaused, reconciling: true},
		{name: "rolling out", in: conditionInput{counts: with(func(c *v1alpha1.AgentCounts) { c.ConfigApplied = 1 }), steps: 3, rollout: rolling},
			reason: v1alpha1.ReasonRollingOut, message: "rolling out config r2, step 1 of 3: 1 of 3 connected collectors run it", reconciling: true},
		{name: "applying", in: conditionInput{counts: with(func(c *v1alpha1.AgentCounts) { c.ConfigApplied = 2 })},
			reason: v1alpha1.ReasonConfigApplying, message: "2 of 3 connected collectors run the current config", reconciling: true},
		{name: "unhealthy", in: conditionInput{counts: with(func(c *v1alpha1.AgentCounts) { c.Healthy = 2 })},
			reason: v1alpha1.ReasonUnhealthy, message: "1 of 3 connected collectors are unhealthy"},
		{name: "pods missing", in: conditionInput{mode: v1alpha1.ModeDaemonSet, scheduled: ptr(int32(5)), counts: good},
			reason: v1alpha1.ReasonAgentsMissing, message: "3 of 5 scheduled pods are connected", reconciling: true},
		{name: "only read-only members", in: conditionInput{mode: v1alpha1.ModeDaemonSet, scheduled: &zero,
			counts: v1alpha1.AgentCounts{Connected: 2, ReadOnly: 2, Healthy: 2}},
			ready: true, reason: v1alpha1.ReasonReadOnlyMembers,
			message: "all 2 connected collectors are read-only members and healthy; spec.config runs on none of them"},
		{name: "ready with read-only members", in: conditionInput{mode: v1alpha1.ModeDaemonSet, scheduled: &three,
			counts: v1alpha1.AgentCounts{Desired: 3, Connected: 4, ReadOnly: 1, Healthy: 4, ConfigApplied: 3}},
			ready: true, reason: v1alpha1.ReasonReady, message: "3 collectors run the current config and are healthy; 1 read-only member"},
		{name: "ready", in: conditionInput{counts: good}, ready: true, reason: v1alpha1.ReasonReady,
			message: "3 collectors run the current config and are healthy"},
		{name: "complete rollout is ready", in: conditionInput{counts: good, steps: 3,
			rollout: &v1alpha1.RolloutStatus{Revision: "r2", Phase: v1alpha1.RolloutComplete}}, ready: true, reason: v1alpha1.ReasonReady},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			in := tc.in
			valid, conn, applied, health := configValid(in), connected(in), configApplied(in), healthy(in)
			got := ready(in, valid, conn, applied, health)
			g.Expect(got.Type).To(Equal(v1alpha1.ConditionReady))
			g.Expect(got.Status == metav1.ConditionTrue).To(Equal(tc.ready))
			g.Expect(got.Reason).To(Equal(tc.reason))
			if tc.message != "" {
				g.Expect(got.Message).To(Equal(tc.message))
			}
			g.Expect(reconciling(got).Status == metav1.ConditionTrue).To(Equal(tc.reconciling), "Reconciling")
			g.Expect(stalled(got).Status == metav1.ConditionTrue).To(Equal(tc.stalled), "Stalled")
		})
	}
}

// TestMessagesAgreeWithOneCollector: with one collector, the messages say "collector", and their verbs agree.
func TestMessagesAgreeWithOneCollector(t *testing.T) {
	g := NewWithT(t)
	one := conditionInput{counts: v1alpha1.AgentCounts{Desired: 1, Connected: 1, Healthy: 1, ConfigApplied: 1}}
	valid, conn, applied, health := configValid(one), connected(one), configApplied(one), healthy(one)
	g.Expect(applied.Message).To(Equal("the connected collector runs the current config"))
	g.Expect(health.Message).To(Equal("the connected collector is healthy"))
	g.Expect(ready(one, valid, conn, applied, health).Message).To(Equal("1 collector runs the current config and is healthy"))

	readOnly := conditionInput{counts: v1alpha1.AgentCounts{Connected: 1, ReadOnly: 1, Healthy: 1}}
	valid, conn, applied, health = configValid(readOnly), connected(readOnly), configApplied(readOnly), healthy(readOnly)
	g.Expect(ready(readOnly, valid, conn, applied, health).Message).
		To(Equal("the connected collector is a read-only member and healthy; spec.config runs on none of them"))
}

// TestConnectedNeverMisleads: no denominator of 0.
func TestConnectedNeverMisleads(t *testing.T) {
	g := NewWithT(t)
	zero := int32(0)
	g.Expect(connected(conditionInput{mode: v1alpha1.ModeDaemonSet, scheduled: &zero,
		counts: v1alpha1.AgentCounts{Connected: 1}}).Message).To(Equal("1 connected; the DaemonSet has no scheduled pods"))
	g.Expect(connected(conditionInput{mode: v1alpha1.ModeExternal,
		counts: v1alpha1.AgentCounts{Connected: 2, ReadOnly: 1}}).Message).To(Equal("1 connected; 1 read-only member; no EnrollmentToken is redeemed"))
	g.Expect(connected(conditionInput{counts: v1alpha1.AgentCounts{Desired: 4, Connected: 3}}).Message).To(Equal("3 of 4 expected collectors connected"))
	g.Expect(connectedColumn(v1alpha1.AgentCounts{Connected: 1})).To(Equal("1"))
	g.Expect(connectedColumn(v1alpha1.AgentCounts{Desired: 2, Connected: 1})).To(Equal("1/2"))
}

func ptr[T any](v T) *T { return &v }
