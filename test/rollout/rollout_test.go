package rollout_test

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
)

const agents = 100

var defaultSteps = []intstr.IntOrString{intstr.FromInt32(1), intstr.FromString("10%"), intstr.FromString("100%")}

// TestStepsHappenInOrderAndBake: one collector, then ten, then all; each step waits for its collectors
// and the bake time; the rollout completes and the revision becomes the stable one.
func TestStepsHappenInOrderAndBake(t *testing.T) {
	g := NewWithT(t)
	startOperator(t)
	key := newCollector(t, agents, progressive(defaultSteps...))
	f := start(t, key, agents, nil)
	// The first config has nothing to roll back to: everyone gets it.
	waitApplied(t, key, f, sha(config(0)))
	g.Expect(get(g, key).Status.Rollout.Phase).To(Equal(v1alpha1.RolloutComplete))

	h := sha(config(1))
	edited := time.Now()
	edit(g, key, func(s *v1alpha1.ManagedCollectorSpec) { s.Config = config(1) })
	g.Eventually(func(g Gomega) {
		mc := get(g, key)
		g.Expect(mc.Status.Rollout.Revision).To(Equal(h))
		g.Expect(mc.Status.Rollout.Updated).To(Equal(int32(1)))
	}, timeout, interval).Should(Succeed())
	g.Expect(f.sent(h)).To(Equal(1), "step 1 is one collector")
	g.Expect(kstatusOf(g, key)).To(Equal(status.InProgressStatus))
	g.Expect(argoHealth(g, key)).To(Equal("Progressing"))
	mc := get(g, key)
	g.Expect(cond(mc, v1alpha1.ConditionReconciling).Status).To(Equal(metav1.ConditionTrue))
	g.Expect(cond(mc, v1alpha1.ConditionReady).Reason).To(Equal(v1alpha1.ReasonRollingOut))
	g.Consistently(func() int { return f.sent(h) }, bake/2, interval).Should(Equal(1), "it bakes before the next step")

	var step1 time.Time
	g.Eventually(func(g Gomega) {
		mc := get(g, key)
		g.Expect(mc.Status.Rollout.Step).To(Equal(int32(1)))
		step1 = mc.Status.Rollout.StepStartedAt.Time
	}, timeout, interval).Should(Succeed())
	g.Expect(step1.Sub(edited)).To(BeNumerically(">=", bake-time.Second), "the API's second resolution aside, the step waited for the bake")
	g.Eventually(func(g Gomega) {
		g.Expect(get(g, key).Status.Rollout.Updated).To(Equal(int32(10)))
	}, timeout, interval).Should(Succeed())
	g.Expect(f.sent(h)).To(Equal(10), "step 2 is 10% of 100")

	g.Eventually(func(g Gomega) {
		mc := get(g, key)
		g.Expect(mc.Status.Rollout.Phase).To(Equal(v1alpha1.RolloutComplete))
		g.Expect(mc.Status.Rollout.StableRevision).To(Equal(h))
	}, timeout, interval).Should(Succeed())
	t.Logf("MEASURE edit -> Complete, 3 steps, bake %v: %v", bake, time.Since(edited))
	waitApplied(t, key, f, h)
	g.Expect(kstatusOf(g, key)).To(Equal(status.CurrentStatus))
	g.Expect(argoHealth(g, key)).To(Equal("Healthy"))
	mc = get(g, key)
	g.Expect(mc.Status.History[0]).To(And(HaveField("Hash", h), HaveField("Outcome", v1alpha1.OutcomeComplete)))
	g.Expect(mc.Status.History[1]).To(And(HaveField("Hash", sha(config(0))), HaveField("Outcome", v1alpha1.OutcomeComplete)))
	g.Eventually(func(g Gomega) {
		g.Expect(events(g, key, v1alpha1.EventRolloutStarted)).To(HaveLen(1))
		g.Expect(events(g, key, v1alpha1.EventRolloutStepCompleted)).To(HaveLen(2))
		g.Expect(events(g, key, v1alpha1.EventRolloutCompleted)).To(HaveLen(1))
	}, timeout, interval).Should(Succeed())
}

// TestAFailingCanaryRollsBack: the canary reports the new config FAILED; the rollout halts and rolls
// back; every collector runs the stable config; the failed config is never offered again; kstatus says
// Failed. A different config then rolls out.
func TestAFailingCanaryRollsBack(t *testing.T) {
	g := NewWithT(t)
	startOperator(t)
	key := newCollector(t, agents, progressive(defaultSteps...))
	bad := sha(config(1))
	f := start(t, key, agents, func(_ int, h string) (bool, bool) { return h == bad, false })
	stable := sha(config(0))
	waitApplied(t, key, f, stable)

	edited := time.Now()
	edit(g, key, func(s *v1alpha1.ManagedCollectorSpec) { s.Config = config(1) })
	g.Eventually(func(g Gomega) {
		mc := get(g, key)
		g.Expect(mc.Status.Rollout.Phase).To(Equal(v1alpha1.RolloutRolledBack))
		g.Expect(mc.Status.Rollout.Failed).To(Equal(int32(1)))
		g.Expect(mc.Status.Rollout.LastFailure.Reason).To(Equal(v1alpha1.FailureConfigFailed))
		g.Expect(mc.Status.Rollout.LastFailure.Message).To(ContainSubstring("address already in use"))
	}, timeout, interval).Should(Succeed())
	t.Logf("MEASURE edit -> RolledBack: %v", time.Since(edited))
	mc := get(g, key)
	g.Expect(cond(mc, v1alpha1.ConditionReady).Reason).To(Equal(v1alpha1.ReasonRolledBack))
	g.Expect(cond(mc, v1alpha1.ConditionStalled).Status).To(Equal(metav1.ConditionTrue))
	g.Expect(kstatusOf(g, key)).To(Equal(status.FailedStatus))
	g.Expect(argoHealth(g, key)).To(Equal("Degraded"))
	g.Expect(mc.Status.History[0]).To(HaveField("Outcome", v1alpha1.OutcomeRolledBack))
	// Everyone runs the stable config; nobody but the canary ever got the bad one.
	g.Eventually(func() int { return f.running(stable) }, timeout, interval).Should(Equal(agents))
	g.Consistently(func() int { return f.sent(bad) }, 2*bake, interval).Should(Equal(1))
	g.Eventually(func(g Gomega) {
		rb := events(g, key, v1alpha1.EventRolledBack)
		g.Expect(rb).To(HaveLen(1))
		g.Expect(rb[0].Type).To(Equal("Warning"))
	}, timeout, interval).Should(Succeed())

	// A different config starts a new rollout.
	good := sha(config(2))
	edit(g, key, func(s *v1alpha1.ManagedCollectorSpec) { s.Config = config(2) })
	g.Eventually(func(g Gomega) {
		mc := get(g, key)
		g.Expect(mc.Status.Rollout.Revision).To(Equal(good))
		g.Expect(mc.Status.Rollout.Phase).To(Equal(v1alpha1.RolloutComplete))
	}, timeout, interval).Should(Succeed())
	waitApplied(t, key, f, good)
	g.Expect(f.sent(bad)).To(Equal(1))
}

// TestUnhealthyAfterApplyingFailsTheRevision: collectors that apply the config but then stay unhealthy
// fail it after the grace, and the rollout rolls back.
func TestUnhealthyAfterApplyingFailsTheRevision(t *testing.T) {
	g := NewWithT(t)
	startOperator(t)
	key := newCollector(t, 20, progressive(intstr.FromInt32(2), intstr.FromString("100%")))
	bad := sha(config(1))
	f := start(t, key, 20, func(_ int, h string) (bool, bool) { return false, h == bad })
	stable := sha(config(0))
	waitApplied(t, key, f, stable)

	edit(g, key, func(s *v1alpha1.ManagedCollectorSpec) { s.Config = config(1) })
	g.Eventually(func(g Gomega) {
		mc := get(g, key)
		g.Expect(mc.Status.Rollout.Phase).To(Equal(v1alpha1.RolloutRolledBack))
		g.Expect(mc.Status.Rollout.LastFailure.Reason).To(Equal(v1alpha1.FailureUnhealthy))
	}, timeout, interval).Should(Succeed())
	g.Expect(f.sent(bad)).To(Equal(2))
	g.Eventually(func() int { return f.running(stable) }, timeout, interval).Should(Equal(20))
}

// TestPauseAndResume: paused holds the rollout where it is for as long as it is paused; resumed, it goes
// on from the same step.
func TestPauseAndResume(t *testing.T) {
	g := NewWithT(t)
	startOperator(t)
	key := newCollector(t, agents, progressive(defaultSteps...))
	f := start(t, key, agents, nil)
	waitApplied(t, key, f, sha(config(0)))

	h := sha(config(1))
	edit(g, key, func(s *v1alpha1.ManagedCollectorSpec) {
		s.Config = config(1)
		s.Rollout.Paused = true
	})
	g.Eventually(func(g Gomega) {
		mc := get(g, key)
		g.Expect(mc.Status.Rollout.Revision).To(Equal(h))
		g.Expect(mc.Status.Rollout.Phase).To(Equal(v1alpha1.RolloutPaused))
		g.Expect(cond(mc, v1alpha1.ConditionReady).Reason).To(Equal(v1alpha1.ReasonRolloutPaused))
	}, timeout, interval).Should(Succeed())
	g.Consistently(func(g Gomega) {
		mc := get(g, key)
		g.Expect(mc.Status.Rollout.Step).To(BeZero())
		g.Expect(f.sent(h)).To(BeNumerically("<=", 1))
	}, 3*bake, interval).Should(Succeed())
	g.Expect(kstatusOf(g, key)).To(Equal(status.InProgressStatus))
	g.Expect(argoHealth(g, key)).To(Equal("Suspended"))

	edit(g, key, func(s *v1alpha1.ManagedCollectorSpec) { s.Rollout.Paused = false })
	g.Eventually(func(g Gomega) {
		ro := get(g, key).Status.Rollout
		g.Expect(ro.Phase).To(Equal(v1alpha1.RolloutComplete), "%+v sent=%d", *ro, f.sent(h))
	}, timeout, interval).Should(Succeed())
	waitApplied(t, key, f, h)
	g.Eventually(func(g Gomega) {
		g.Expect(events(g, key, v1alpha1.EventRolloutPaused)).To(HaveLen(1))
	}, timeout, interval).Should(Succeed())
}

// TestANewSpecSupersedesTheRollout: a new config in the middle starts over from step 0, and the collectors
// that had the superseded revision take the new one rather than going back.
func TestANewSpecSupersedesTheRollout(t *testing.T) {
	g := NewWithT(t)
	startOperator(t)
	key := newCollector(t, agents, progressive(defaultSteps...))
	f := start(t, key, agents, nil)
	waitApplied(t, key, f, sha(config(0)))

	first := sha(config(1))
	edit(g, key, func(s *v1alpha1.ManagedCollectorSpec) { s.Config = config(1) })
	g.Eventually(func(g Gomega) {
		mc := get(g, key)
		g.Expect(mc.Status.Rollout.Step).To(Equal(int32(1)))
		g.Expect(mc.Status.Rollout.Updated).To(Equal(int32(10)))
	}, timeout, interval).Should(Succeed())

	second := sha(config(2))
	edit(g, key, func(s *v1alpha1.ManagedCollectorSpec) { s.Config = config(2) })
	g.Eventually(func(g Gomega) {
		mc := get(g, key)
		g.Expect(mc.Status.Rollout.Revision).To(Equal(second))
		g.Expect(mc.Status.Rollout.Step).To(BeZero())
		g.Expect(f.running(first)).To(BeZero(), "the superseded revision is replaced")
		g.Expect(f.running(second)).To(BeNumerically(">=", 10), "by the new one, not the stable one")
	}, timeout, interval).Should(Succeed())
	g.Expect(get(g, key).Status.History).To(ContainElement(And(HaveField("Hash", first), HaveField("Outcome", v1alpha1.OutcomeSuperseded))))
	g.Eventually(func(g Gomega) {
		g.Expect(get(g, key).Status.Rollout.Phase).To(Equal(v1alpha1.RolloutComplete))
	}, timeout, interval).Should(Succeed())
	waitApplied(t, key, f, second)
}

// TestAnOperatorRestartContinuesTheStep: the rollout's state is in the API; a new operator continues from
// the step the old one was at, with the same collectors.
func TestAnOperatorRestartContinuesTheStep(t *testing.T) {
	g := NewWithT(t)
	startOperator(t)
	slow := progressive(defaultSteps...)
	slow.BakeTime = &metav1.Duration{Duration: 6 * time.Second}
	key := newCollector(t, agents, slow)
	f := start(t, key, agents, nil)
	waitApplied(t, key, f, sha(config(0)))

	h := sha(config(1))
	edit(g, key, func(s *v1alpha1.ManagedCollectorSpec) { s.Config = config(1) })
	g.Eventually(func(g Gomega) {
		mc := get(g, key)
		g.Expect(mc.Status.Rollout.Step).To(Equal(int32(1)))
		g.Expect(mc.Status.Rollout.Updated).To(Equal(int32(10)))
	}, timeout, interval).Should(Succeed())
	threshold := get(g, key).Status.Rollout.Threshold

	restartOperator(t)
	g.Eventually(func(g Gomega) {
		mc := get(g, key)
		g.Expect(mc.Status.Counts.Connected).To(Equal(int32(agents)))
		g.Expect(mc.Status.Rollout.Step).To(Equal(int32(1)), "the same step")
		g.Expect(mc.Status.Rollout.Threshold).To(Equal(threshold), "the same collectors")
		g.Expect(mc.Status.Rollout.Updated).To(Equal(int32(10)))
	}, timeout, interval).Should(Succeed())
	g.Expect(f.sent(h)).To(Equal(10), "nobody else got it across the restart")
	g.Eventually(func(g Gomega) {
		g.Expect(get(g, key).Status.Rollout.Phase).To(Equal(v1alpha1.RolloutComplete))
	}, timeout, interval).Should(Succeed())
	waitApplied(t, key, f, h)
}

// TestAllAtOnceIsUnchanged: without spec.rollout an edit reaches every collector at once, and there is no
// rollout state.
func TestAllAtOnceIsUnchanged(t *testing.T) {
	g := NewWithT(t)
	startOperator(t)
	key := newCollector(t, agents, nil)
	f := start(t, key, agents, nil)
	waitApplied(t, key, f, sha(config(0)))
	edit(g, key, func(s *v1alpha1.ManagedCollectorSpec) { s.Config = config(1) })
	waitApplied(t, key, f, sha(config(1)))
	mc := get(g, key)
	g.Expect(mc.Status.Rollout).To(BeNil())
	g.Expect(mc.Status.History[0]).To(And(HaveField("Hash", sha(config(1))), HaveField("Outcome", v1alpha1.OutcomeComplete)))
	g.Expect(kstatusOf(g, key)).To(Equal(status.CurrentStatus))
}
