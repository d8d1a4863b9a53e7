package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	eventsv1 "k8s.io/api/events/v1"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/fleet"
	"github.com/linkmesh/linkmesh-operator/test/bench/loadgen"
	"github.com/linkmesh/linkmesh-operator/test/framework/manager"
	"github.com/linkmesh/linkmesh-operator/test/framework/process"
)

// floodOptions are the flood scenario's flags.
type floodOptions struct {
	n, others, maxCollectors int
	hold, after              time.Duration
	retry                    bool
}

func (f floodOptions) validate() error {
	var errs []error
	if f.n <= 0 || f.n > maxOperatorCollectors {
		errs = append(errs, fmt.Errorf("-flood-n %d: between 1 and %d, what one operator's listener takes with 20000 open files", f.n, maxOperatorCollectors))
	}
	if f.others <= 0 || f.others > 5000 {
		errs = append(errs, fmt.Errorf("-flood-others %d: between 1 and 5000", f.others))
	}
	if f.maxCollectors < 0 {
		errs = append(errs, fmt.Errorf("-flood-max %d: 0 (the default) or more", f.maxCollectors))
	}
	if f.hold <= 0 || f.after < 0 {
		errs = append(errs, fmt.Errorf("-flood-hold %s must be positive and -flood-after %s not negative", f.hold, f.after))
	}
	return errors.Join(errs...)
}

// floodProbe is how often each collector of the other group times a round trip to the operator.
const floodProbe = time.Second

// floodBaseline is how long the other group's round trips are timed before the flood.
const floodBaseline = 5 * time.Second

// heapMetric is the Go runtime's heap in use, which the manager's metrics endpoint exports.
const heapMetric = "go_memstats_heap_inuse_bytes"

// floodResult is the flood scenario's table.
type floodResult struct {
	opts floodOptions
	// limit is the flooded ManagedCollector's cap, as the operator applies it.
	limit string
	// Operator memory: RSS and heap in use before the flood, the highest RSS sampled during it (and the
	// high-water mark by its end), at its end, and after the flood stopped and -flood-after passed.
	rssBefore, rssPeak, rssHWM, rssEnd, rssAfter uint64
	heapBefore, heapEnd, heapAfter               float64
	// answered is from the start of the flood until each of its agents was accepted (sent a config) or
	// refused, as the bench saw it; accepted and refused count them, refusedCap those refused last with the
	// spec.maxCollectors message, refusedUpgrade those refused last at the upgrade (the 503 a credential
	// whose group stays full gets), otherErrors the other messages.
	answered                                      time.Duration
	accepted, refused, refusedCap, refusedUpgrade int
	otherErrors                                   map[string]int
	// handshakes are the flood's WebSocket connections in the hold, refusals its error answers.
	handshakes, refusals int64
	// The other group: an edit before the flood and one during it, from the edit to the last APPLIED;
	// round trips before and during the flood; reconnections during it; connected at the end of the flood
	// and after; status at the end of the flood.
	editBefore, editDuring    time.Duration
	probeBefore, probeDuring  loadgen.Probes
	reconnected               int
	connectedEnd, connectedAf int
	statusConnected, statusOK int32
	// window is the flood's, from its start to the end of the hold: API requests, CPU; peakWrites the most
	// writes in one second of it.
	window     measured
	peakWrites []int64
	// tooMany are the flooded ManagedCollector's TooManyCollectors Events at the end: objects,
	// occurrences, the last message.
	tooMany     [2]int
	tooManyNote string
	// floodCPU is the flood's load generators' CPU in the hold: they share the machine's cores.
	floodCPU float64
	load     string
}

// runFlood: a ManagedCollector of -flood-others collectors, connected and configured, and another whose
// pod credential -flood-n connections use at once, each with an instance UID of its own and the largest
// description the server keeps. What does it cost the operator, what is refused and how, and does the
// other group notice?
func runFlood(ctx context.Context, o *options) (*floodResult, error) {
	fo := o.flood
	e, err := newEnv(ctx, o, "flood")
	if err != nil {
		return nil, err
	}
	defer e.close()
	res := &floodResult{opts: fo}
	ports, err := manager.NewPorts(false)
	if err != nil {
		return nil, err
	}
	progress("flood: starting the operator")
	op, err := e.startOperator(ctx, "manager", ports)
	if err != nil {
		return nil, err
	}
	const steady, flooded = "steady", "flooded"
	if err := e.createCollector(ctx, steady, v1alpha1.ModeDaemonSet, fo.others); err != nil {
		return nil, err
	}
	spec := v1alpha1.ManagedCollectorSpec{Mode: v1alpha1.ModeDaemonSet, Config: configA}
	// No pod is scheduled on an envtest API server: the default cap is max(2 × 0, 0 + 100).
	res.limit = "unset: the default, 100 with no pods scheduled"
	if fo.maxCollectors > 0 {
		limit := int32(fo.maxCollectors)
		spec.MaxCollectors = &limit
		res.limit = thousands(fo.maxCollectors)
	}
	if err := e.createCollectorSpec(ctx, flooded, spec); err != nil {
		return nil, err
	}
	tokens := map[string]string{}
	for _, mc := range []string{steady, flooded} {
		token, err := e.collectorToken(ctx, mc)
		if err != nil {
			return nil, err
		}
		if tokens[mc], err = e.writeTokens(mc+".token", []string{token}); err != nil {
			return nil, err
		}
	}
	others, err := e.startLoads(ctx, loadSpec{name: "steady", servers: []string{ports.OpAMP}, tokenFile: tokens[steady],
		count: fo.others, pods: true, prefix: "steady", probe: floodProbe})
	if err != nil {
		return nil, err
	}
	hashA, hashC := configHash(configA), configHash(configC)

	progress("flood: %d collectors of %s connect", fo.others, steady)
	if _, err := others.Start(); err != nil {
		return nil, err
	}
	if _, err := others.waitFor(ctx, fmt.Sprintf("all %d of %s running config %.12s", fo.others, steady, hashA), o.timeout,
		func(p loadgen.Progress) bool { return p.Applied[hashA] == fo.others && p.Connected == fo.others }); err != nil {
		return nil, err
	}
	if _, err := e.cl.statusShows(ctx, steady, hashA, fo.others, o.timeout); err != nil {
		return nil, err
	}
	if err := sleep(ctx, o.settle); err != nil {
		return nil, err
	}
	progress("flood: timing %s before the flood", steady)
	if err := others.Mark(ctx); err != nil {
		return nil, err
	}
	if err := sleep(ctx, floodBaseline); err != nil {
		return nil, err
	}
	res.probeBefore = others.Total().Probes
	if res.editBefore, err = e.timeEdit(ctx, others, steady, configB, fo.others); err != nil {
		return nil, err
	}
	u, err := process.UsageOf(op.Pid())
	if err != nil {
		return nil, err
	}
	res.rssBefore, res.heapBefore = u.RSS, heapOf(ctx, op)

	flood, err := e.startLoads(ctx, loadSpec{name: "flood", servers: []string{ports.OpAMP}, tokenFile: tokens[flooded],
		count: fo.n, pods: true, prefix: "flood", maxDescription: true, stopOnRefusal: !fo.retry})
	if err != nil {
		return nil, err
	}
	if err := others.Mark(ctx); err != nil {
		return nil, err
	}
	sampler := sampleRSS(op.Pid(), 100*time.Millisecond)
	defer sampler.stop()
	w, err := openWindow(ctx, e.cl, op.Pid())
	if err != nil {
		return nil, err
	}
	peak := e.cl.sampleWrites(ctx)
	defer func() { _, _ = peak.stop() }()
	progress("flood: %d connections with one credential, distinct instance UIDs, the largest descriptions", fo.n)
	cpu0 := flood.CPU()
	t0, err := flood.Start()
	if err != nil {
		return nil, err
	}
	answered := func(p loadgen.Progress) int { return sum(p.Received) + sum(p.Refused) }
	done := make(chan error, 1)
	go func() {
		_, err := flood.waitFor(ctx, fmt.Sprintf("each of the %d flood agents accepted or refused", fo.n), o.timeout,
			func(p loadgen.Progress) bool { return answered(p) >= fo.n })
		res.answered = time.Since(t0)
		done <- err
	}()
	// The other group's edit, once the flood is well under way.
	if _, err := flood.waitFor(ctx, "a tenth of the flood answered", o.timeout, func(p loadgen.Progress) bool { return answered(p) >= fo.n/10 }); err != nil {
		return nil, err
	}
	progress("flood: editing the config of %s during the flood", steady)
	if res.editDuring, err = e.timeEdit(ctx, others, steady, configC, fo.others); err != nil {
		return nil, err
	}
	if err := <-done; err != nil {
		return nil, err
	}
	if err := sleep(ctx, time.Until(t0.Add(fo.hold))); err != nil {
		return nil, err
	}
	fp, sp := flood.Total(), others.Total()
	res.floodCPU = flood.CPU() - cpu0
	if res.window, err = w.close(ctx, e.cl, op.Pid()); err != nil {
		return nil, err
	}
	res.rssPeak = sampler.stop()
	if res.peakWrites, err = peak.stop(); err != nil {
		return nil, err
	}
	res.rssEnd, res.rssHWM, res.heapEnd = res.window.Usage.RSS, res.window.Usage.Peak, heapOf(ctx, op)
	res.load = loadAverage()
	res.accepted, res.handshakes, res.refusals = sum(fp.Received), fp.Handshakes, fp.Refusals
	res.otherErrors = map[string]int{}
	for msg, k := range fp.Refused {
		res.refused += k
		switch msg {
		case string(fleet.RefusedGroupFull):
			res.refusedCap += k
		case loadgen.RefusedAtUpgrade:
			res.refusedUpgrade += k
		default:
			res.otherErrors[msg] += k
		}
	}
	res.probeDuring, res.reconnected, res.connectedEnd = sp.Probes, sp.Reconnected, sp.Connected
	if m := e.cl.Collector(steady); m != nil {
		res.statusConnected = m.Status.Counts.Connected
		if m.Status.ConfigHash == hashC {
			res.statusOK = m.Status.Counts.ConfigApplied
		}
	}

	progress("flood: stopping the flood; measuring again in %s", fo.after)
	flood.Stop()
	if err := sleep(ctx, fo.after); err != nil {
		return nil, err
	}
	if u, err = process.UsageOf(op.Pid()); err != nil {
		return nil, err
	}
	res.rssAfter, res.heapAfter = u.RSS, heapOf(ctx, op)
	res.connectedAf = others.Total().Connected
	byReason, err := eventsOf(ctx, e.cl, flooded)
	if err != nil {
		return nil, err
	}
	if evs := byReason[v1alpha1.EventTooManyCollectors]; len(evs) > 0 {
		res.tooMany = [2]int{len(evs), occurrences(evs)}
		last := slices.MaxFunc(evs, func(a, b eventsv1.Event) int { return eventTime(a).Compare(eventTime(b)) })
		res.tooManyNote = last.Note
	}
	return res, nil
}

// timeEdit edits the config of mc and returns the time from the edit until the last of its n collectors
// reported it APPLIED.
func (e *env) timeEdit(ctx context.Context, ld *loads, mc, config string, n int) (time.Duration, error) {
	hash := configHash(config)
	tEdit := time.Now()
	if err := e.editConfig(ctx, mc, config); err != nil {
		return 0, err
	}
	p, err := ld.waitFor(ctx, fmt.Sprintf("the edit (config %.12s) reaching all %d of %s", hash, n, mc), e.o.timeout,
		func(p loadgen.Progress) bool { return p.Applied[hash] == n })
	if err != nil {
		return 0, err
	}
	return time.Unix(0, p.LastOutcome[hash]).Sub(tEdit), nil
}

// heapOf is the operator's heap in use, -1 if its metrics do not say.
func heapOf(ctx context.Context, op *operator) float64 {
	families, err := op.Metrics(ctx)
	if err != nil {
		return -1
	}
	if v := manager.Gauges(families, heapMetric, nil); len(v) == 1 {
		return v[0]
	}
	return -1
}

// rssSampler reads a process's RSS every interval until stopped, and keeps the highest.
type rssSampler struct {
	stopCh chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	peak   uint64
}

func sampleRSS(pid int, interval time.Duration) *rssSampler {
	s := &rssSampler{stopCh: make(chan struct{})}
	s.wg.Go(func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			if u, err := process.UsageOf(pid); err == nil {
				s.peak = max(s.peak, u.RSS)
			}
			select {
			case <-s.stopCh:
				return
			case <-tick.C:
			}
		}
	})
	return s
}

// stop ends the sampling, if it has not ended yet, and returns the highest RSS seen.
func (s *rssSampler) stop() uint64 {
	s.once.Do(func() { close(s.stopCh) })
	s.wg.Wait()
	return s.peak
}

// eventTime is when an Event last happened.
func eventTime(ev eventsv1.Event) time.Time {
	if ev.Series != nil {
		return ev.Series.LastObservedTime.Time
	}
	return ev.EventTime.Time
}

// loadAverage is the machine's load average over 1, 5 and 15 minutes: the machine is shared.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], ", ")
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func mem(b float64) string {
	if b < 0 {
		return "?"
	}
	return megabytes(uint64(b))
}

// probeText is a round-trip summary: median, 99th percentile, longest, and pings still unanswered.
func probeText(p loadgen.Probes) string {
	if p.Sent == 0 {
		return "no pings"
	}
	ms := func(ns int64) string { return fmt.Sprintf("%.0f ms", float64(ns)/1e6) }
	s := fmt.Sprintf("%d of %d answered; ≤ %s median, ≤ %s p99, %s longest", p.Answered, p.Sent,
		ms(int64(p.Quantile(0.5))), ms(int64(p.Quantile(0.99))), ms(p.Max))
	if p.Waiting > 0 {
		s += fmt.Sprintf("; oldest unanswered %s", ms(p.Waiting))
	}
	return s
}

func (r *floodResult) print(w io.Writer) {
	retry := "refused agents reconnect as opamp-go does"
	if !r.opts.retry {
		retry = "refused agents stop"
	}
	fmt.Fprintf(w, "\n### Flood: %s connections with one pod credential, distinct instance UIDs, the largest descriptions (%s); %s other collectors\n\n",
		thousands(r.opts.n), retry, thousands(r.opts.others))
	t := table{w: w, cols: 2}
	t.row("", "operator")
	t.row("---", "---:")
	t.row("spec.maxCollectors of the flooded ManagedCollector", r.limit)
	t.row("operator RSS: before; highest sampled in the flood (high-water mark); end of the flood; after", fmt.Sprintf("%s; %s (%s); %s; %s",
		megabytes(r.rssBefore), megabytes(r.rssPeak), megabytes(r.rssHWM), megabytes(r.rssEnd), megabytes(r.rssAfter)))
	t.row("operator heap in use: before; end of the flood; after", fmt.Sprintf("%s; %s; %s", mem(r.heapBefore), mem(r.heapEnd), mem(r.heapAfter)))
	t.row(fmt.Sprintf("flood agents accepted; refused (last with the spec.maxCollectors message; at the upgrade, 503), of %s", thousands(r.opts.n)),
		fmt.Sprintf("%s; %s (%s; %s)", thousands(r.accepted), thousands(r.refused), thousands(r.refusedCap), thousands(r.refusedUpgrade)))
	if len(r.otherErrors) > 0 {
		var parts []string
		for msg, n := range r.otherErrors {
			parts = append(parts, fmt.Sprintf("%d × %q", n, msg))
		}
		slices.Sort(parts)
		t.row("refused with other messages", strings.Join(parts, "; "))
	}
	t.row("from the start until each flood agent was accepted or refused", secs(r.answered))
	t.row(fmt.Sprintf("flood handshakes; refusals (ServerErrorResponses and refused upgrades) in %s", r.opts.hold), fmt.Sprintf("%s; %s (%.0f a second)",
		thousands(int(r.handshakes)), thousands(int(r.refusals)), float64(r.refusals)/r.opts.hold.Seconds()))
	t.row("other group: edit reaches all, before the flood; during it", fmt.Sprintf("%s; %s", secs(r.editBefore), secs(r.editDuring)))
	t.row(fmt.Sprintf("other group: round trip of a status message, before the flood (%s)", floodBaseline), probeText(r.probeBefore))
	t.row("other group: round trip of a status message, during the flood", probeText(r.probeDuring))
	t.row("other group: reconnections during the flood; connected at its end; after", fmt.Sprintf("%d; %s; %s",
		r.reconnected, thousands(r.connectedEnd), thousands(r.connectedAf)))
	t.row("other group's status at the end of the flood: connected; applied the edit", fmt.Sprintf("%d; %d", r.statusConnected, r.statusOK))
	t.row(fmt.Sprintf("API writes per second in the flood (%s): all (status, Events, owned objects); most in one second", r.opts.hold),
		fmt.Sprintf("%s; %s", writesText(r.window.Requests, r.opts.hold), perSecondText(r.peakWrites)))
	t.row("API requests in the flood", r.window.Requests.String())
	t.row("Events written in the flood", fmt.Sprint(eventsWritten(r.window.Requests)))
	t.row("TooManyCollectors Events: objects; occurrences", fmt.Sprintf("%d; %d", r.tooMany[0], r.tooMany[1]))
	if r.tooManyNote != "" {
		t.row("the last TooManyCollectors Event", r.tooManyNote)
	}
	t.row("CPU in the flood: operator; the flood's load generators (same machine)", fmt.Sprintf("%s; %s", cpu(r.window.CPU), cpu(r.floodCPU)))
	t.row("machine load average at the end of the flood (1, 5, 15 min)", r.load)
}
