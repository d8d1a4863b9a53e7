package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/test/bench/apirequests"
	"github.com/linkmesh/linkmesh-operator/test/bench/loadgen"
	"github.com/linkmesh/linkmesh-operator/test/framework/manager"
)

// The rollout scenario's configs, after configA (the first) and configB (an AllAtOnce edit that times the
// fan-out): configC is rolled out progressively and completes; configD is one that some collectors fail
// (a receiver port already taken on their hosts, say), rolled back.
const (
	configC = `receivers: {otlp: {protocols: {grpc: {endpoint: 0.0.0.0:4317}}}}
exporters: {debug: {verbosity: detailed}}
service: {pipelines: {traces: {receivers: [otlp], exporters: [debug]}}}
`
	configD = `receivers: {otlp: {protocols: {grpc: {endpoint: 0.0.0.0:4317}, http: {endpoint: 0.0.0.0:4318}}}}
exporters: {debug: {verbosity: detailed}}
service: {pipelines: {traces: {receivers: [otlp], exporters: [debug]}}}
`
)

// Which collectors fail configD (-rollout-fail-by).
const (
	failByRank  = "rank"
	failByIndex = "index"
)

// rolloutOptions are the rollout scenario's flags.
type rolloutOptions struct {
	n            int
	steps        []intstr.IntOrString
	bake         time.Duration
	failFraction float64
	failBy       string
}

// maxOperatorCollectors is what one operator can hold on this machine: its listener refuses connections
// beyond three quarters of the 20,000 open files a process may have.
const maxOperatorCollectors = 15000

func (r rolloutOptions) validate() error {
	var errs []error
	if r.n <= 0 || r.n > maxOperatorCollectors {
		errs = append(errs, fmt.Errorf("-rollout-n %d: between 1 and %d, what one operator holds with 20000 open files", r.n, maxOperatorCollectors))
	}
	if r.bake < 0 || r.bake > 24*time.Hour {
		errs = append(errs, fmt.Errorf("-rollout-bake %s: between 0s and 24h, as spec.rollout.bakeTime", r.bake))
	}
	if r.failFraction <= 0 || r.failFraction > 1 {
		errs = append(errs, fmt.Errorf("-rollout-fail-fraction %v: more than 0, at most 1", r.failFraction))
	}
	if r.failBy != failByRank && r.failBy != failByIndex {
		errs = append(errs, fmt.Errorf("-rollout-fail-by %q: rank or index", r.failBy))
	}
	return errors.Join(errs...)
}

// parseSteps reads -rollout-steps: counts and percentages, comma-separated, the last 100%. The API
// server checks the rest (ascending, counts first).
func parseSteps(s string) ([]intstr.IntOrString, error) {
	var steps []intstr.IntOrString
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if p, ok := strings.CutSuffix(part, "%"); ok {
			if v, err := strconv.Atoi(p); err != nil || v < 1 || v > 100 {
				return nil, fmt.Errorf("-rollout-steps: %q is not a percentage from 1%% to 100%%", part)
			}
			steps = append(steps, intstr.FromString(part))
			continue
		}
		v, err := strconv.Atoi(part)
		if err != nil || v < 1 {
			return nil, fmt.Errorf("-rollout-steps: %q is neither a count of at least 1 nor a percentage", part)
		}
		steps = append(steps, intstr.FromInt32(int32(v)))
	}
	if len(steps) == 0 || steps[len(steps)-1] != intstr.FromString("100%") {
		return nil, fmt.Errorf("-rollout-steps %q: the last step must be 100%%", s)
	}
	return steps, nil
}

// stepTimes are the moments of one step of a rollout, from the edit, as the bench's informer saw status:
// the step began (status.rollout.step), all its collectors ran the revision (bakeStartedAt set; for the
// last step, Complete), the next step began or the rollout completed. Zero is never seen.
type stepTimes struct {
	target                      int32
	started, applied, completed time.Duration
	// bakeStamp is bakeStartedAt as status holds it, from the edit: metav1.Time has whole seconds.
	bakeStamp time.Duration
}

// rolloutRun is what one spec.config edit of the rollout scenario did.
type rolloutRun struct {
	// phase is from the edit until status.rollout showed the revision Complete (or RolledBack); all until
	// the last collector reported the revision (or, rolled back, the stable one again) APPLIED.
	phase, all time.Duration
	steps      []stepTimes
	// offered counts the collectors ever sent the revision, failed those that ever reported it FAILED.
	offered, failed int
	// status is status.rollout at the end.
	status v1alpha1.RolloutStatus
	window measured
	// length is the window's: from the edit until -settle after both phase and all; peak the most writes
	// in one second of it.
	length time.Duration
	peak   []int64
}

// rolloutResult is the rollout scenario's table.
type rolloutResult struct {
	n, processes int
	opts         rolloutOptions
	settle       time.Duration
	// reference is an AllAtOnce edit of the same fleet: from the edit to the last APPLIED.
	reference time.Duration
	good, bad rolloutRun
	// events are the ManagedCollector's rollout Events at the end, by reason: the Event objects and the
	// occurrences they count.
	events map[string][2]int
}

// runRollout: a ManagedCollector of n collectors, an AllAtOnce edit to time the fan-out, then
// spec.rollout Progressive and two edits: a config every collector applies, which completes step by
// step, and one that a fraction of the collectors fail, which is rolled back.
func runRollout(ctx context.Context, o *options) (*rolloutResult, error) {
	ro := o.rollout
	n := ro.n
	e, err := newEnv(ctx, o, "rollout")
	if err != nil {
		return nil, err
	}
	defer e.close()
	res := &rolloutResult{n: n, opts: ro, settle: o.settle, processes: (n + o.perProcess - 1) / o.perProcess}
	ports, err := manager.NewPorts(false)
	if err != nil {
		return nil, err
	}
	op, ld, err := e.startFleet(ctx, "rollout", ports, n)
	if err != nil {
		return nil, err
	}
	const mc = fleetCollector
	hashA, hashB, hashC, hashD := configHash(configA), configHash(configB), configHash(configC), configHash(configD)

	progress("rollout: %d collectors connect", n)
	if _, err := ld.Start(); err != nil {
		return nil, err
	}
	if _, err := ld.waitFor(ctx, fmt.Sprintf("all %d running config %.12s", n, hashA), o.timeout, func(p loadgen.Progress) bool { return p.Applied[hashA] == n && p.Connected == n }); err != nil {
		return nil, err
	}
	if _, err := e.cl.statusShows(ctx, mc, hashA, n, o.timeout); err != nil {
		return nil, err
	}

	progress("rollout: an AllAtOnce edit, for the fan-out")
	tEdit := time.Now()
	if err := e.editConfig(ctx, mc, configB); err != nil {
		return nil, err
	}
	p, err := ld.waitFor(ctx, fmt.Sprintf("the edit (config %.12s) reaching all %d", hashB, n), o.timeout, func(p loadgen.Progress) bool { return p.Applied[hashB] == n })
	if err != nil {
		return nil, err
	}
	res.reference = time.Unix(0, p.LastOutcome[hashB]).Sub(tEdit)
	if _, err := e.cl.statusShows(ctx, mc, hashB, n, o.timeout); err != nil {
		return nil, err
	}

	progress("rollout: spec.rollout Progressive, steps %s, bake time %s", stepsText(ro.steps), ro.bake)
	if err := e.patchSpec(ctx, mc, "spec.rollout", map[string]any{"rollout": v1alpha1.RolloutSpec{
		Strategy: v1alpha1.RolloutProgressive, Steps: ro.steps, BakeTime: &metav1.Duration{Duration: ro.bake},
	}}); err != nil {
		return nil, err
	}
	if _, err := e.cl.when(ctx, "status.rollout showing the current config Complete", o.timeout, func() bool {
		m := e.cl.collectorLocked(mc)
		return m != nil && m.Status.ObservedGeneration == m.Generation && m.Status.Rollout != nil &&
			m.Status.Rollout.Revision == hashB && m.Status.Rollout.Phase == v1alpha1.RolloutComplete
	}, e.rolloutText(mc)); err != nil {
		return nil, err
	}
	if err := sleep(ctx, o.settle); err != nil {
		return nil, err
	}

	progress("rollout: editing spec.config, rolled out progressively")
	if res.good, err = e.measureRollout(ctx, ld, op, mc, configC, hashC, v1alpha1.RolloutComplete, hashC); err != nil {
		return nil, err
	}
	if err := sleep(ctx, o.settle); err != nil {
		return nil, err
	}

	progress("rollout: editing spec.config to one that %.1f%% of the collectors fail", 100*ro.failFraction)
	if err := ld.SetFail(loadgen.FailRule{Hash: hashD, Fraction: ro.failFraction, ByRank: ro.failBy == failByRank}); err != nil {
		return nil, err
	}
	// The load generators take commands in order: once they acknowledge the mark, they fail hashD.
	if err := ld.Mark(ctx); err != nil {
		return nil, err
	}
	if res.bad, err = e.measureRollout(ctx, ld, op, mc, configD, hashD, v1alpha1.RolloutRolledBack, hashC); err != nil {
		return nil, err
	}
	if res.events, err = rolloutEvents(ctx, e.cl, mc); err != nil {
		return nil, err
	}
	return res, nil
}

// measureRollout edits spec.config of mc to config and follows the rollout of its hash until status shows
// the phase and every collector reports final APPLIED (the revision, or the stable one after a rollback).
func (e *env) measureRollout(ctx context.Context, ld *loads, op *operator, mc, config, hash string, phase v1alpha1.RolloutPhase, final string) (rolloutRun, error) {
	var run rolloutRun
	var mu sync.Mutex
	var tEdit time.Time
	stop := e.cl.follow(func(at time.Time, m *v1alpha1.ManagedCollector) {
		st := m.Status.Rollout
		if m.Name != mc || st == nil || st.Revision != hash {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		since := at.Sub(tEdit)
		k := int(st.Step)
		for len(run.steps) <= k {
			run.steps = append(run.steps, stepTimes{})
		}
		if run.steps[k].started == 0 {
			run.steps[k].started, run.steps[k].target = since, st.Target
		}
		for j := range k {
			if run.steps[j].completed == 0 {
				run.steps[j].completed = since
			}
		}
		if st.BakeStartedAt != nil && run.steps[k].applied == 0 {
			run.steps[k].applied, run.steps[k].bakeStamp = since, st.BakeStartedAt.Sub(tEdit)
		}
		if st.Phase == v1alpha1.RolloutComplete && run.steps[k].completed == 0 {
			if run.steps[k].applied == 0 {
				run.steps[k].applied = since
			}
			run.steps[k].completed = since
		}
	})
	defer stop()

	w, err := openWindow(ctx, e.cl, op.Pid())
	if err != nil {
		return run, err
	}
	peak := e.cl.sampleWrites(ctx)
	defer func() { _, _ = peak.stop() }()
	mu.Lock()
	tEdit = time.Now()
	mu.Unlock()
	if err := e.editConfig(ctx, mc, config); err != nil {
		return run, err
	}
	at, err := e.cl.when(ctx, fmt.Sprintf("status.rollout showing config %.12s %s", hash, phase), e.o.timeout, func() bool {
		m := e.cl.collectorLocked(mc)
		return m != nil && m.Status.Rollout != nil && m.Status.Rollout.Revision == hash && m.Status.Rollout.Phase == phase
	}, e.rolloutText(mc))
	if err != nil {
		return run, err
	}
	n := ld.Total().Agents
	// Applied, not merely running: a collector that failed the revision must be sent the stable config
	// again (a real one is down: its supervisor has no config it could start).
	p, err := ld.waitFor(ctx, fmt.Sprintf("all %d reporting config %.12s APPLIED", n, final), e.o.timeout, func(p loadgen.Progress) bool { return p.Applied[final] == n })
	if err != nil {
		return run, err
	}
	// The writes that the end causes (the last status, its Events) belong to the rollout.
	if err := sleep(ctx, e.o.settle); err != nil {
		return run, err
	}
	end := time.Now()
	if run.window, err = w.close(ctx, e.cl, op.Pid()); err != nil {
		return run, err
	}
	if run.peak, err = peak.stop(); err != nil {
		return run, err
	}
	mu.Lock()
	defer mu.Unlock()
	run.phase = at.Sub(tEdit)
	run.all = time.Unix(0, p.LastOutcome[final]).Sub(tEdit)
	run.length = end.Sub(tEdit)
	run.offered, run.failed = p.Offered[hash], p.EverFailed[hash]
	if m := e.cl.Collector(mc); m != nil && m.Status.Rollout != nil {
		run.status = *m.Status.Rollout
	}
	return run, nil
}

// rolloutText describes status.rollout for error messages.
func (e *env) rolloutText(name string) func() string {
	return func() string {
		m := e.cl.collectorLocked(name)
		if m == nil || m.Status.Rollout == nil {
			return "no status.rollout"
		}
		r := m.Status.Rollout
		return fmt.Sprintf("status.rollout: revision %.12s, phase %s, step %d, target %d, updated %d, failed %d; observedGeneration %d of %d",
			r.Revision, r.Phase, r.Step, r.Target, r.Updated, r.Failed, m.Status.ObservedGeneration, m.Generation)
	}
}

// rolloutReasons are the Events of a progressive rollout.
var rolloutReasons = []string{
	v1alpha1.EventRolloutStarted, v1alpha1.EventRolloutStepCompleted, v1alpha1.EventRolloutPaused,
	v1alpha1.EventRolloutHalted, v1alpha1.EventRolledBack, v1alpha1.EventRolloutCompleted,
}

// rolloutEvents counts the ManagedCollector's rollout Events by reason.
func rolloutEvents(ctx context.Context, cl *cluster, mc string) (map[string][2]int, error) {
	byReason, err := eventsOf(ctx, cl, mc)
	if err != nil {
		return nil, err
	}
	out := map[string][2]int{}
	for _, r := range rolloutReasons {
		if evs := byReason[r]; len(evs) > 0 {
			out[r] = [2]int{len(evs), occurrences(evs)}
		}
	}
	return out, nil
}

// eventsOf lists the Events about the ManagedCollector mc, by reason.
func eventsOf(ctx context.Context, cl *cluster, mc string) (map[string][]eventsv1.Event, error) {
	var list eventsv1.EventList
	if err := cl.client.List(ctx, &list, client.InNamespace(benchNamespace)); err != nil {
		return nil, fmt.Errorf("listing the Events: %w", err)
	}
	out := map[string][]eventsv1.Event{}
	for _, ev := range list.Items {
		if ev.Regarding.Kind == "ManagedCollector" && ev.Regarding.Name == mc {
			out[ev.Reason] = append(out[ev.Reason], ev)
		}
	}
	return out, nil
}

// occurrences counts what Events stand for: an Event with a series stands for its count.
func occurrences(evs []eventsv1.Event) int {
	n := 0
	for _, ev := range evs {
		if ev.Series != nil && ev.Series.Count > 1 {
			n += int(ev.Series.Count)
			continue
		}
		n++
	}
	return n
}

func stepsText(steps []intstr.IntOrString) string {
	var parts []string
	for _, s := range steps {
		parts = append(parts, s.String())
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// writeKinds split a window's writes for the table.
var (
	statusKinds = []string{"managedcollectors", "collectorshares"}
	eventKinds  = []string{"events"}
)

// writesText says the window's writes per second: all of them (status, Events, owned objects).
func writesText(c apirequests.Counts, d time.Duration) string {
	all := c.Total(func(k apirequests.Key) bool { return k.Write() })
	return fmt.Sprintf("%.2f (%s, %s, %s)", float64(all)/d.Seconds(),
		writesPerSecond(c, d, statusKinds...), writesPerSecond(c, d, eventKinds...), writesPerSecond(c, d, ownedKinds...))
}

func (r *rolloutResult) print(w io.Writer) {
	fmt.Fprintf(w, "\n### Progressive rollout: %s collectors, steps %s, bake time %s (%d load generator processes)\n\n",
		thousands(r.n), stepsText(r.opts.steps), r.opts.bake, r.processes)
	t := table{w: w, cols: 2}
	t.row("", "operator")
	t.row("---", "---:")
	t.row("reference: an AllAtOnce edit reaches all", secs(r.reference))

	g := r.good
	bakes := time.Duration(max(len(r.opts.steps)-1, 0)) * r.opts.bake
	ideal := bakes + r.reference
	t.row("edit until status.rollout shows Complete", secs(g.phase))
	t.row("edit until every collector reports the new config APPLIED", secs(g.all))
	t.row(fmt.Sprintf("ideal: %d bake times + the AllAtOnce fan-out", len(r.opts.steps)-1), secs(ideal))
	t.row("Complete / ideal", ratio(g.phase.Seconds(), ideal.Seconds()))
	for i, s := range g.steps {
		t.row(fmt.Sprintf("step %d (%s, %s collectors): started; all applied; completed", i+1, stepName(r.opts.steps, i), thousands(int(s.target))),
			fmt.Sprintf("%s; %s; %s", when(s.started), when(s.applied), when(s.completed)))
	}
	for i, s := range g.steps {
		if i+1 < len(g.steps) && s.applied > 0 && g.steps[i+1].started > 0 {
			t.row(fmt.Sprintf("step %d bake (%s): from status showing all applied; from bakeStartedAt as status holds it (whole seconds), until step %d started", i+1, r.opts.bake, i+2),
				fmt.Sprintf("%s; %s", secs(g.steps[i+1].started-s.applied), secs(g.steps[i+1].started-s.bakeStamp)))
		}
	}
	t.row("collectors offered the new config", thousands(g.offered))
	r.writeRows(t, "from the edit until "+secs(r.settle)+" after all run it", g)
	t.row("operator CPU during the rollout; RSS at the end", fmt.Sprintf("%s; %s", cpu(g.window.CPU), megabytes(g.window.Usage.RSS)))

	b := r.bad
	how := "whose rank puts them in the first step"
	if r.opts.failBy == failByIndex {
		how = "picked by index, whatever their rank"
	}
	t.row("second edit: collectors that fail it", fmt.Sprintf("%.1f%%, %s", 100*r.opts.failFraction, how))
	t.row("edit until status.rollout shows RolledBack", secs(b.phase))
	t.row("edit until every collector reports the stable config APPLIED again", secs(b.all))
	t.row("step that caught it", fmt.Sprintf("%d of %d (%s)", b.status.Step+1, len(r.opts.steps), stepName(r.opts.steps, int(b.status.Step))))
	for i, s := range b.steps {
		t.row(fmt.Sprintf("step %d (%s collectors): started; all applied; completed", i+1, thousands(int(s.target))),
			fmt.Sprintf("%s; %s; %s", when(s.started), when(s.applied), when(s.completed)))
	}
	t.row("collectors ever offered the failing config", thousands(b.offered))
	t.row("collectors that reported it FAILED; status.rollout.failed", fmt.Sprintf("%s; %d", thousands(b.failed), b.status.Failed))
	if f := b.status.LastFailure; f != nil {
		t.row("status.rollout.lastFailure", fmt.Sprintf("%s: %s", f.Reason, f.Message))
	}
	r.writeRows(t, "from the edit until "+secs(r.settle)+" after all run the stable config", b)
	var evs []string
	for _, reason := range rolloutReasons {
		if c, ok := r.events[reason]; ok {
			evs = append(evs, fmt.Sprintf("%s %d", reason, c[1]))
		}
	}
	t.row("rollout Events of both edits", strings.Join(evs, ", "))
}

// writeRows are a window's API writes: per second on average and at most in one second, the requests,
// the Events.
func (r *rolloutResult) writeRows(t table, window string, run rolloutRun) {
	t.row(fmt.Sprintf("API writes per second, %s (%s): all (status, Events, owned objects); most in one second", window, secs(run.length)),
		fmt.Sprintf("%s; %s", writesText(run.window.Requests, run.length), perSecondText(run.peak)))
	t.row("API requests in that window", run.window.Requests.String())
	t.row("Events written in that window", fmt.Sprint(eventsWritten(run.window.Requests)))
}

// stepName is the i'th step as spec.rollout.steps has it.
func stepName(steps []intstr.IntOrString, i int) string {
	if i < 0 || i >= len(steps) {
		return "?"
	}
	return steps[i].String()
}

// when is a time from an edit, or "not seen".
func when(d time.Duration) string {
	if d == 0 {
		return "not seen"
	}
	return secs(d)
}
