package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/test/bench/apirequests"
	"github.com/linkmesh/linkmesh-operator/test/bench/floor"
	"github.com/linkmesh/linkmesh-operator/test/bench/loadgen"
	"github.com/linkmesh/linkmesh-operator/test/framework/manager"
	"github.com/linkmesh/linkmesh-operator/test/framework/process"
)

// side is what one server (the operator or the floor) achieved with the same fleet.
type side struct {
	// Connected and Configured are from the start of the agents to the last one connecting and the last
	// one reporting the config APPLIED; FanOut from the edit to the last one reporting the new config.
	Connected, Configured, FanOut time.Duration
	// CPU in seconds during the ramp, the steady window and the fan-out.
	CPURamp, CPUSteady, CPUFanOut float64
	// RSS at the end of the steady window, and its high-water mark by then.
	RSS, Peak uint64
}

// fleetResult is one fleet size's table.
type fleetResult struct {
	n, processes int
	steady       time.Duration
	op           side
	floor        *side
	// StatusAll and StatusEdit are from the start (the edit) until status showed all N connected and
	// applied (the new config).
	statusAll, statusEdit  time.Duration
	ramp, steadyW, fanOutW apirequests.Counts
	// failures are the smoke's findings.
	failures []string
}

// ownedKinds are the objects the operator applies for a ManagedCollector.
var ownedKinds = []string{"secrets", "configmaps", "daemonsets"}

// runFleet measures a fleet of n collectors: ramp, steady window and fan-out against the operator, then
// the same against the floor.
func runFleet(ctx context.Context, o *options, n int) (*fleetResult, error) {
	name := fmt.Sprintf("fleet-%d", n)
	e, err := newEnv(ctx, o, name)
	if err != nil {
		return nil, err
	}
	defer e.close()
	res := &fleetResult{n: n, steady: o.steady, processes: (n + o.perProcess - 1) / o.perProcess}

	ports, err := manager.NewPorts(o.pprofDir != "")
	if err != nil {
		return nil, err
	}
	op, ld, err := e.startFleet(ctx, name, ports, n)
	if err != nil {
		return nil, err
	}
	const mc = fleetCollector
	hashA, hashB := configHash(configA), configHash(configB)

	// The ramp.
	progress("%s: %d collectors connect to the operator", name, n)
	w, err := openWindow(ctx, e.cl, op.Pid())
	if err != nil {
		return nil, err
	}
	prof := startProfile(ctx, o, op, fmt.Sprintf("ramp-%d", n), o.pprofRamp)
	t0, err := ld.Start()
	if err != nil {
		return nil, err
	}
	p, err := ld.waitFor(ctx, fmt.Sprintf("all %d connected to the operator", n), o.timeout, func(p loadgen.Progress) bool { return p.Connected == n })
	if err != nil {
		return nil, err
	}
	res.op.Connected = time.Unix(0, p.LastConnect).Sub(t0)
	p, err = ld.waitFor(ctx, fmt.Sprintf("all %d running config %.12s", n, hashA), o.timeout, func(p loadgen.Progress) bool { return p.Applied[hashA] == n })
	if err != nil {
		return nil, err
	}
	res.op.Configured = time.Unix(0, p.LastOutcome[hashA]).Sub(t0)
	at, err := e.cl.statusShows(ctx, mc, hashA, n, o.timeout)
	if err != nil {
		return nil, err
	}
	res.statusAll = at.Sub(t0)
	ramp, err := w.close(ctx, e.cl, op.Pid())
	if err != nil {
		return nil, err
	}
	res.ramp, res.op.CPURamp = ramp.Requests, ramp.CPU
	if err := prof.wait(); err != nil {
		return nil, err
	}

	// Nothing changes: what does the operator do?
	if err := sleep(ctx, o.settle); err != nil {
		return nil, err
	}
	progress("%s: steady for %s", name, o.steady)
	if w, err = openWindow(ctx, e.cl, op.Pid()); err != nil {
		return nil, err
	}
	if err := sleep(ctx, o.steady); err != nil {
		return nil, err
	}
	steady, err := w.close(ctx, e.cl, op.Pid())
	if err != nil {
		return nil, err
	}
	res.steadyW, res.op.CPUSteady, res.op.RSS, res.op.Peak = steady.Requests, steady.CPU, steady.Usage.RSS, steady.Usage.Peak
	res.checkSteady(e.cl.Collector(mc), ld.Total(), hashA)

	// The fan-out of an edit.
	progress("%s: editing spec.config", name)
	if w, err = openWindow(ctx, e.cl, op.Pid()); err != nil {
		return nil, err
	}
	prof = startProfile(ctx, o, op, fmt.Sprintf("fanout-%d", n), o.pprofFanOut)
	tEdit := time.Now()
	if err := e.editConfig(ctx, mc, configB); err != nil {
		return nil, err
	}
	p, err = ld.waitFor(ctx, fmt.Sprintf("the edit (config %.12s) reaching all %d", hashB, n), o.timeout, func(p loadgen.Progress) bool { return p.Applied[hashB] == n })
	if err != nil {
		return nil, err
	}
	res.op.FanOut = time.Unix(0, p.LastOutcome[hashB]).Sub(tEdit)
	if at, err = e.cl.statusShows(ctx, mc, hashB, n, o.timeout); err != nil {
		return nil, err
	}
	res.statusEdit = at.Sub(tEdit)
	fan, err := w.close(ctx, e.cl, op.Pid())
	if err != nil {
		return nil, err
	}
	res.fanOutW, res.op.CPUFanOut = fan.Requests, fan.CPU
	if err := prof.wait(); err != nil {
		return nil, err
	}
	e.close()

	if o.floor {
		fl, err := runFloorSide(ctx, o, name, n)
		if err != nil {
			return nil, fmt.Errorf("floor: %w", err)
		}
		res.floor = fl
	}
	return res, nil
}

// checkSteady records what the smoke asserts after the steady window: status counts exactly the fleet,
// every agent runs the config, and the operator applied none of its owned objects, neither while the fleet
// connected and applied (the ramp: the collectors' signals write status only) nor in the steady window.
func (res *fleetResult) checkSteady(mc *v1alpha1.ManagedCollector, p loadgen.Progress, hash string) {
	n := int32(res.n)
	if mc == nil {
		res.failures = append(res.failures, "no ManagedCollector seen after the steady window")
		return
	}
	if c := mc.Status.Counts; c.Connected != n || c.ConfigApplied != n || c.ConfigFailed != 0 || c.ConfigDrifted != 0 {
		res.failures = append(res.failures, fmt.Sprintf("after the steady window status counts connected %d, configApplied %d, configFailed %d, configDrifted %d; want %d, %d, 0, 0",
			c.Connected, c.ConfigApplied, c.ConfigFailed, c.ConfigDrifted, n, n))
	}
	if p.Connected != res.n || p.Applied[hash] != res.n {
		res.failures = append(res.failures, fmt.Sprintf("after the steady window %d agents are connected and %d run config %.12s; want %d", p.Connected, p.Applied[hash], hash, res.n))
	}
	for _, w := range []struct {
		name string
		reqs apirequests.Counts
	}{{"the ramp", res.ramp}, {"the steady window", res.steadyW}} {
		for _, k := range w.reqs.Sorted() {
			if k.Write() && slices.Contains(ownedKinds, k.Resource) {
				res.failures = append(res.failures, fmt.Sprintf("in %s the operator wrote owned objects: %d %s", w.name, w.reqs[k], k))
			}
		}
	}
}

// profile is a CPU profile being taken.
type profile struct {
	done chan error
	heap func() error
}

// startProfile takes a CPU profile of the operator for d, if the bench was asked to (-pprof).
func startProfile(ctx context.Context, o *options, op *operator, name string, d time.Duration) *profile {
	p := &profile{done: make(chan error, 1)}
	if o.pprofDir == "" {
		p.done <- nil
		return p
	}
	go func() { p.done <- op.Profile(ctx, o.pprofDir, "cpu-"+name+".pprof", "profile", int(d.Seconds())) }()
	p.heap = func() error { return op.Profile(ctx, o.pprofDir, "heap-"+name+".pprof", "heap", 0) }
	return p
}

// wait waits for the CPU profile, then saves a heap profile.
func (p *profile) wait() error {
	if err := <-p.done; err != nil {
		return err
	}
	if p.heap != nil {
		return p.heap()
	}
	return nil
}

// runFloorSide runs the same ramp, steady window and fan-out against the floor server.
func runFloorSide(ctx context.Context, o *options, name string, n int) (*side, error) {
	dir := filepath.Join(o.tmpDir, name+"-floor")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	cfgFile := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgFile, []byte(configA), 0o600); err != nil {
		return nil, err
	}
	progress("%s: starting the floor", name)
	srv, err := process.Start("floor", dir, syscall.SIGKILL, nil, o.self, "floor", "-config-file", cfgFile)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := srv.Stop(0, 30*time.Second); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
	}()
	var first floor.Event
	select {
	case line, ok := <-srv.Lines():
		if !ok || json.Unmarshal(line, &first) != nil || first.Addr == "" {
			return nil, fmt.Errorf("the floor did not start: %s; %w", first.Error, srv.Exited())
		}
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("the floor did not say its address within 30s; its log is %s", srv.Log)
	}
	srv.DiscardLines()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("floor\n"), 0o600); err != nil {
		return nil, err
	}
	ld, err := startLoads(ctx, o.self, dir, loadSpec{
		name: "load", servers: []string{first.Addr}, tokenFile: tokenFile, count: n, pods: true, prefix: "fleet",
		perProcess: o.perProcess, applyDelay: o.applyDelay, heartbeat: o.heartbeat,
	})
	if err != nil {
		return nil, err
	}
	defer ld.Stop()
	hashA, hashB := configHash(configA), configHash(configB)
	s := &side{}

	progress("%s: %d collectors connect to the floor", name, n)
	u0, err := process.UsageOf(srv.Pid())
	if err != nil {
		return nil, err
	}
	t0, err := ld.Start()
	if err != nil {
		return nil, err
	}
	p, err := ld.waitFor(ctx, fmt.Sprintf("all %d connected to the floor", n), o.timeout, func(p loadgen.Progress) bool { return p.Connected == n })
	if err != nil {
		return nil, err
	}
	s.Connected = time.Unix(0, p.LastConnect).Sub(t0)
	if p, err = ld.waitFor(ctx, fmt.Sprintf("all %d running the floor's config", n), o.timeout, func(p loadgen.Progress) bool { return p.Applied[hashA] == n }); err != nil {
		return nil, err
	}
	s.Configured = time.Unix(0, p.LastOutcome[hashA]).Sub(t0)
	u1, err := process.UsageOf(srv.Pid())
	if err != nil {
		return nil, err
	}
	s.CPURamp = u1.CPU - u0.CPU

	if err := sleep(ctx, o.settle); err != nil {
		return nil, err
	}
	u2, err := process.UsageOf(srv.Pid())
	if err != nil {
		return nil, err
	}
	if err := sleep(ctx, o.steady); err != nil {
		return nil, err
	}
	u3, err := process.UsageOf(srv.Pid())
	if err != nil {
		return nil, err
	}
	s.CPUSteady, s.RSS, s.Peak = u3.CPU-u2.CPU, u3.RSS, u3.Peak

	progress("%s: the floor pushes the edit", name)
	push, err := json.Marshal(floor.Command{Push: new(configB)})
	if err != nil {
		return nil, err
	}
	tEdit := time.Now()
	if err := srv.Send(push); err != nil {
		return nil, err
	}
	if p, err = ld.waitFor(ctx, fmt.Sprintf("the floor's edit reaching all %d", n), o.timeout, func(p loadgen.Progress) bool { return p.Applied[hashB] == n }); err != nil {
		return nil, err
	}
	s.FanOut = time.Unix(0, p.LastOutcome[hashB]).Sub(tEdit)
	u4, err := process.UsageOf(srv.Pid())
	if err != nil {
		return nil, err
	}
	s.CPUFanOut = u4.CPU - u3.CPU
	return s, nil
}
