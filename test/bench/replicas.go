package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/test/bench/apirequests"
	"github.com/linkmesh/linkmesh-operator/test/bench/loadgen"
	"github.com/linkmesh/linkmesh-operator/test/framework/manager"
)

// Which replica the replicas scenario kills (-replicas-kill).
const (
	killOther  = "other"
	killLeader = "leader"
)

// replicaCount is how many replicas the scenario runs: as many as a chart with replicaCount 2.
const replicaCount = 2

// replicasResult is the several-replicas scenario's table.
type replicasResult struct {
	n, processes int
	kill         string
	steady       time.Duration
	// perReplica is each replica's linkmesh_opamp_connections once all are connected.
	perReplica []int
	// From the start of the agents: the last connected, the last APPLIED, status showing all.
	connected, configured, status time.Duration
	// From the edit: the last APPLIED of the new config, status showing it.
	fanOut, statusEdit time.Duration
	// The kill: how many collectors the killed replica held; from the kill until they all reconnected,
	// until the survivor counts all connected and applied, until status shows all once each, until the
	// survivor leads (when the leader was killed); the most collectors status showed connected meanwhile.
	moved                                  int
	back, backConfigured, backStatus, lead time.Duration
	most                                   int32
	// standby says the victim's collectors went to a third replica started before the kill; after are
	// the live replicas' connections at the end (survivor, then stand-by).
	standby                       bool
	after                         []int
	ramp, steadyW, fanOutW, killW measured
}

// runReplicas: two operator replicas with leader election, n collectors spread over them by two load
// generator processes (each agent moves to another replica when a connection fails, as a Service sends
// it to a live pod); ramp, steady window and fan-out as in the fleet scenario, then one replica is
// killed with SIGKILL. Its collectors move to a stand-by replica started just before (-replicas-standby):
// a replica holds a socket per collector, and a survivor holding all 20,000 would need more than this
// machine's 20,000 open files per process; without the stand-by they move to the survivor.
func runReplicas(ctx context.Context, o *options, n int) (*replicasResult, error) {
	e, err := newEnv(ctx, o, "replicas")
	if err != nil {
		return nil, err
	}
	defer e.close()
	res := &replicasResult{n: n, kill: o.replicasKill, steady: o.steady}

	// The first replica starts alone and leads once elected, so the bench knows which one it kills.
	args := []string{"--leader-elect", "--leader-election-namespace=" + benchNamespace}
	var ops []*operator
	var servers []string
	for i := range replicaCount {
		ports, err := manager.NewPorts(false)
		if err != nil {
			return nil, err
		}
		progress("replicas: starting replica %d", i)
		op, err := e.startOperator(ctx, fmt.Sprintf("manager-%d", i), ports, args...)
		if err != nil {
			return nil, err
		}
		servers = append(servers, ports.OpAMP)
		ops = append(ops, op)
		if i == 0 {
			if err := waitUntil(ctx, "replica 0 elected", o.timeout, func() <-chan struct{} { return nil },
				func() bool { return leads(ctx, op) }, func() string { return "leader_election_master_status is not 1" }); err != nil {
				return nil, err
			}
		}
	}
	pids := func(ops ...*operator) []int {
		var out []int
		for _, op := range ops {
			out = append(out, op.Pid())
		}
		return out
	}
	const mc = "fleet"
	if err := e.createCollector(ctx, mc, v1alpha1.ModeDaemonSet, n); err != nil {
		return nil, err
	}
	token, err := e.collectorToken(ctx, mc)
	if err != nil {
		return nil, err
	}
	tokenFile, err := e.writeTokens("collector.token", []string{token})
	if err != nil {
		return nil, err
	}
	// The stand-by's address is the agents' first fallback; it starts just before the kill.
	standbyPorts, err := manager.NewPorts(false)
	if err != nil {
		return nil, err
	}
	spread := 0
	if o.standby {
		servers, spread = append(servers, standbyPorts.OpAMP), replicaCount
	}
	perProcess := (n + 1) / 2
	res.processes = (n + perProcess - 1) / perProcess
	ld, err := e.startLoads(ctx, loadSpec{name: "load", servers: servers, spread: spread, tokenFile: tokenFile, count: n, perProcess: perProcess, pods: true, prefix: "fleet"})
	if err != nil {
		return nil, err
	}
	hashA, hashB := configHash(configA), configHash(configB)

	progress("replicas: %d collectors connect to %d replicas", n, len(ops))
	w, err := openWindow(ctx, e.cl, pids(ops...)...)
	if err != nil {
		return nil, err
	}
	t0, err := ld.Start()
	if err != nil {
		return nil, err
	}
	p, err := ld.waitFor(ctx, fmt.Sprintf("all %d connected", n), o.timeout, func(p loadgen.Progress) bool { return p.Connected == n })
	if err != nil {
		return nil, err
	}
	res.connected = time.Unix(0, p.LastConnect).Sub(t0)
	if p, err = ld.waitFor(ctx, fmt.Sprintf("all %d running config %.12s", n, hashA), o.timeout, func(p loadgen.Progress) bool { return p.Applied[hashA] == n }); err != nil {
		return nil, err
	}
	res.configured = time.Unix(0, p.LastOutcome[hashA]).Sub(t0)
	at, err := e.cl.statusShows(ctx, mc, hashA, n, o.timeout)
	if err != nil {
		return nil, err
	}
	res.status = at.Sub(t0)
	if res.ramp, err = w.close(ctx, e.cl, pids(ops...)...); err != nil {
		return nil, err
	}
	for _, op := range ops {
		res.perReplica = append(res.perReplica, connectionsOf(ctx, op))
	}

	if err := sleep(ctx, o.settle); err != nil {
		return nil, err
	}
	progress("replicas: steady for %s", o.steady)
	if w, err = openWindow(ctx, e.cl, pids(ops...)...); err != nil {
		return nil, err
	}
	if err := sleep(ctx, o.steady); err != nil {
		return nil, err
	}
	if res.steadyW, err = w.close(ctx, e.cl, pids(ops...)...); err != nil {
		return nil, err
	}

	progress("replicas: editing spec.config")
	if w, err = openWindow(ctx, e.cl, pids(ops...)...); err != nil {
		return nil, err
	}
	tEdit := time.Now()
	if err := e.editConfig(ctx, mc, configB); err != nil {
		return nil, err
	}
	if p, err = ld.waitFor(ctx, fmt.Sprintf("the edit (config %.12s) reaching all %d", hashB, n), o.timeout, func(p loadgen.Progress) bool { return p.Applied[hashB] == n }); err != nil {
		return nil, err
	}
	res.fanOut = time.Unix(0, p.LastOutcome[hashB]).Sub(tEdit)
	if at, err = e.cl.statusShows(ctx, mc, hashB, n, o.timeout); err != nil {
		return nil, err
	}
	res.statusEdit = at.Sub(tEdit)
	if res.fanOutW, err = w.close(ctx, e.cl, pids(ops...)...); err != nil {
		return nil, err
	}
	if err := sleep(ctx, o.settle); err != nil {
		return nil, err
	}

	victim, survivor := ops[1], ops[0]
	if o.replicasKill == killLeader {
		victim, survivor = ops[0], ops[1]
	}
	// taker is where the victim's collectors go: the stand-by, or the survivor.
	taker := survivor
	if o.standby {
		progress("replicas: starting the stand-by replica")
		if taker, err = e.startOperator(ctx, "manager-standby", standbyPorts, args...); err != nil {
			return nil, err
		}
		res.standby = true
	}
	res.moved = connectionsOf(ctx, victim)
	progress("replicas: SIGKILL %s (%d collectors)", victim.Name, res.moved)
	if err := ld.Mark(ctx); err != nil {
		return nil, err
	}
	liveOps := []*operator{survivor}
	if taker != survivor {
		liveOps = append(liveOps, taker)
	}
	live := pids(liveOps...)
	if w, err = openWindow(ctx, e.cl, live...); err != nil {
		return nil, err
	}
	rv := e.cl.Collector(mc).ResourceVersion
	var leadAt atomic.Int64
	if o.replicasKill == killLeader {
		go func() {
			for ctx.Err() == nil && !leads(ctx, survivor) && !leads(ctx, taker) {
				time.Sleep(50 * time.Millisecond)
			}
			leadAt.Store(time.Now().UnixNano())
		}()
	}
	tKill := time.Now()
	victim.Kill()
	if p, err = ld.waitFor(ctx, fmt.Sprintf("the %d collectors of %s reconnected", res.moved, victim.Name), o.timeout,
		func(p loadgen.Progress) bool { return p.Reconnected >= res.moved && p.Connected == n }); err != nil {
		return nil, err
	}
	res.back = time.Unix(0, p.LastConnect).Sub(tKill)
	// The live replicas' own counts add up to all, connected and applied.
	var states []map[string]int
	err = waitUntil(ctx, fmt.Sprintf("the live replicas counting %d connected with config applied", n), o.timeout,
		func() <-chan struct{} { return nil },
		func() bool {
			states = nil
			connected, applied := 0, 0
			for _, op := range liveOps {
				s, err := op.AgentStates(ctx, benchNamespace, mc)
				if err != nil {
					return false
				}
				states = append(states, s)
				connected, applied = connected+s["connected"], applied+s["config_applied"]
			}
			return connected == n && applied == n
		},
		func() string { return fmt.Sprintf("linkmesh_collector_agents %v", states) })
	if err != nil {
		return nil, err
	}
	res.backConfigured = time.Since(tKill)
	// A status write after the kill showing each collector once: the first writes count the moved
	// collectors twice, on the survivor and in the killed replica's share, until its Lease expires.
	if at, err = e.cl.when(ctx, fmt.Sprintf("status showing %d connected and applied after the kill", n), o.timeout, func() bool {
		m := e.cl.collectorLocked(mc)
		if m == nil || m.ResourceVersion == rv {
			return false
		}
		res.most = max(res.most, m.Status.Counts.Connected)
		return m.Status.ConfigHash == hashB && int(m.Status.Counts.Connected) == n && int(m.Status.Counts.ConfigApplied) == n
	}, e.cl.statusText(mc)); err != nil {
		return nil, err
	}
	res.backStatus = at.Sub(tKill)
	if ns := leadAt.Load(); ns != 0 {
		res.lead = time.Unix(0, ns).Sub(tKill)
	}
	if res.killW, err = w.close(ctx, e.cl, live...); err != nil {
		return nil, err
	}
	for _, op := range liveOps {
		res.after = append(res.after, connectionsOf(ctx, op))
	}
	return res, nil
}

// leads says whether the replica's leader_election_master_status is 1.
func leads(ctx context.Context, op *operator) bool {
	families, err := op.Metrics(ctx)
	return err == nil && slices.Contains(manager.Gauges(families, "leader_election_master_status", nil), 1)
}

// connectionsOf is the replica's linkmesh_opamp_connections, -1 if unreadable.
func connectionsOf(ctx context.Context, op *operator) int {
	families, err := op.Metrics(ctx)
	if err != nil {
		return -1
	}
	if v := manager.Gauges(families, "linkmesh_opamp_connections", nil); len(v) == 1 {
		return int(v[0])
	}
	return -1
}

// The API writes one ManagedCollector causes: shareKinds are how the replicas tell its status (the leader
// its status, the others their shares), at most one a second each; otherKinds its Events and owned
// objects. Leases are per replica, whatever the number of ManagedCollectors.
var (
	shareKinds = []string{"managedcollectors", "collectorshares"}
	otherKinds = []string{"events", "configmaps", "secrets", "daemonsets"}
)

// writesPerSecond are the writes of the kinds in the window, per second.
func writesPerSecond(c apirequests.Counts, d time.Duration, kinds ...string) string {
	n := c.Total(func(k apirequests.Key) bool { return k.Write() && slices.Contains(kinds, k.Resource) })
	return fmt.Sprintf("%.2f", float64(n)/d.Seconds())
}

func (r *replicasResult) print(w io.Writer) {
	fmt.Fprintf(w, "\n### Several replicas: %s collectors over %d replicas (%d load generator processes)\n\n", thousands(r.n), replicaCount, r.processes)
	t := table{w: w, cols: 2}
	t.row("", "operator")
	t.row("---", "---:")
	var per []string
	for _, c := range r.perReplica {
		per = append(per, thousands(c))
	}
	t.row("collectors per replica", strings.Join(per, ", "))
	t.row("all connected", secs(r.connected))
	t.row("all configured", secs(r.configured))
	t.row("status shows all connected and applied", secs(r.status))
	t.row("edit reaches all", secs(r.fanOut))
	t.row("status shows the edit applied by all", secs(r.statusEdit))
	var rss, cpus []string
	for i, u := range r.steadyW.Usages {
		rss = append(rss, fmt.Sprintf("%s (%s)", megabytes(u.RSS), megabytes(u.Peak)))
		cpus = append(cpus, fmt.Sprintf("%s; %s; %s", cpu(r.ramp.CPUs[i]), cpu(r.steadyW.CPUs[i]), cpu(r.fanOutW.CPUs[i])))
	}
	t.row("RSS per replica after the steady window (peak)", strings.Join(rss, ", "))
	t.row("CPU per replica: ramp; steady; fan-out", strings.Join(cpus, ", "))
	ramp, fan := r.status, r.statusEdit
	rates := func(kinds ...string) string {
		return fmt.Sprintf("%s, %s, %s", writesPerSecond(r.ramp.Requests, ramp, kinds...),
			writesPerSecond(r.steadyW.Requests, r.steady, kinds...), writesPerSecond(r.fanOutW.Requests, fan, kinds...))
	}
	t.row("API writes per second per ManagedCollector, status and shares: ramp, steady, fan-out", rates(shareKinds...))
	t.row("API writes per second per ManagedCollector, Events and owned objects: ramp, steady, fan-out", rates(otherKinds...))
	t.row(fmt.Sprintf("Lease writes per second, both replicas, steady (%s)", r.steady), writesPerSecond(r.steadyW.Requests, r.steady, "leases"))
	t.row("API requests in the ramp", r.ramp.Requests.String())
	t.row(fmt.Sprintf("API requests in the steady window (%s)", r.steady), r.steadyW.Requests.String())
	t.row("API requests in the fan-out", r.fanOutW.Requests.String())
	what := "the replica that does not lead"
	if r.kill == killLeader {
		what = "the leader"
	}
	t.row(fmt.Sprintf("kill -9 of %s: the collectors it held", what), thousands(r.moved))
	var after []string
	for _, c := range r.after {
		after = append(after, thousands(c))
	}
	if r.standby {
		t.row("collectors per live replica after the kill (survivor, stand-by)", strings.Join(after, ", "))
	} else {
		t.row("collectors of the survivor after the kill", strings.Join(after, ", "))
	}
	t.row("from the kill until all reconnected", secs(r.back))
	t.row("from the kill until the live replicas count all connected and applied", secs(r.backConfigured))
	t.row("from the kill until status shows all, each once", secs(r.backStatus))
	t.row("most collectors status showed connected meanwhile", thousands(int(r.most)))
	if r.kill == killLeader {
		t.row("from the kill until the survivor leads", secs(r.lead))
	}
	t.row("API requests from the kill until status shows all", r.killW.Requests.String())
	var usage []string
	for i, u := range r.killW.Usages {
		usage = append(usage, fmt.Sprintf("%s; %s", cpu(r.killW.CPUs[i]), megabytes(u.RSS)))
	}
	t.row("live replicas' CPU from the kill until status shows all; RSS at the end", strings.Join(usage, ", "))
}
