package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/linkmesh/linkmesh-operator/test/bench/loadgen"
	"github.com/linkmesh/linkmesh-operator/test/framework/process"
)

// runLoad is `bench load`: one load generator process (see package loadgen).
func runLoad(args []string) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	servers := fs.String("servers", "", "comma-separated OpAMP server addresses (host:port); agents spread over them and fail over")
	spread := fs.Int("spread", 0, "how many of -servers the agents start on (0: all); the others stand by for agents whose server fails")
	tokenFile := fs.String("token-file", "", "file of bearer tokens, one a line: one line for all agents, or one per agent of the whole fleet (this process takes lines -first to -first+-count)")
	var o loadgen.Options
	fs.IntVar(&o.Count, "count", 0, "agents in this process")
	fs.IntVar(&o.First, "first", 0, "index of this process's first agent in the fleet")
	fs.BoolVar(&o.Pods, "pods", false, "report k8s.pod.name and k8s.node.name, as DaemonSet pods do")
	fs.StringVar(&o.Prefix, "prefix", "agent", "start of every host and pod name")
	fs.DurationVar(&o.ApplyDelay, "apply-delay", 0, "simulated collector restart between APPLYING and APPLIED")
	fs.DurationVar(&o.Heartbeat, "heartbeat", 0, "heartbeat interval; 0 keeps opamp-go's 30s")
	fs.StringVar(&o.Fail.Hash, "fail-hash", "", "hex config hash that a fraction of the agents report FAILED")
	fs.Float64Var(&o.Fail.Fraction, "fail-fraction", 0, "fraction of the agents that fail -fail-hash")
	fs.BoolVar(&o.Fail.ByRank, "fail-by-rank", false, "pick the failing agents by their rollout rank (those a first step of -fail-fraction is offered to), not by index")
	fs.BoolVar(&o.MaxDescription, "max-description", false, "pad each agent's description to the most the OpAMP server keeps of one")
	fs.DurationVar(&o.Probe, "probe", 0, "time a status message's round trip from every agent this often; 0 sends none")
	fs.BoolVar(&o.StopOnRefusal, "stop-on-refusal", false, "stop an agent at its first refusal (a ServerErrorResponse or an HTTP error at the upgrade) instead of reconnecting as opamp-go does")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *servers != "" {
		o.Servers = strings.Split(*servers, ",")
	}
	o.Spread = *spread
	tokens, err := readTokens(*tokenFile, o.First, o.Count)
	if err != nil {
		return err
	}
	o.Tokens = tokens
	return loadgen.Serve(o, os.Stdin, os.Stdout)
}

// readTokens reads the tokens a load process needs; tokens never go on a command line, where ps shows them.
func readTokens(path string, first, count int) ([]string, error) {
	if path == "" {
		return nil, errors.New("load: -token-file is required")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	var all []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if t := strings.TrimSpace(sc.Text()); t != "" {
			all = append(all, t)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	switch {
	case len(all) == 1:
		return all, nil
	case first+count <= len(all):
		return all[first : first+count], nil
	default:
		return nil, fmt.Errorf("load: %s has %d tokens, fewer than agents %d to %d need", path, len(all), first, first+count)
	}
}

// loadSpec describes a fleet of load generator processes.
type loadSpec struct {
	name    string
	servers []string
	// spread is how many of servers the agents start on (0: all); see loadgen.Options.Spread.
	spread     int
	tokenFile  string
	count      int
	perProcess int
	pods       bool
	prefix     string
	applyDelay time.Duration
	heartbeat  time.Duration
	// maxDescription, probe and stopOnRefusal are loadgen.Options'.
	maxDescription bool
	probe          time.Duration
	stopOnRefusal  bool
}

// loads is the parent's handle on the load generator processes of one fleet.
type loads struct {
	procs   []*loadProc
	changed *broadcast
}

type loadProc struct {
	*process.Child
	mu       sync.Mutex
	progress loadgen.Progress
	ready    bool
	marked   bool
	failure  string
}

// startLoads starts the processes and waits until each is ready; the agents connect at Start.
func startLoads(ctx context.Context, self, dir string, s loadSpec) (*loads, error) {
	l := &loads{changed: newBroadcast()}
	for first, k := 0, 0; first < s.count; k++ {
		n := min(s.perProcess, s.count-first)
		args := []string{
			"load", "-servers", strings.Join(s.servers, ","), "-spread", strconv.Itoa(s.spread), "-token-file", s.tokenFile,
			"-count", strconv.Itoa(n), "-first", strconv.Itoa(first), "-prefix", s.prefix,
			"-apply-delay", s.applyDelay.String(), "-heartbeat", s.heartbeat.String(),
		}
		if s.pods {
			args = append(args, "-pods")
		}
		if s.maxDescription {
			args = append(args, "-max-description")
		}
		if s.probe > 0 {
			args = append(args, "-probe", s.probe.String())
		}
		if s.stopOnRefusal {
			args = append(args, "-stop-on-refusal")
		}
		c, err := process.Start(fmt.Sprintf("%s-%d", s.name, k), dir, syscall.SIGKILL, nil, self, args...)
		if err != nil {
			l.Stop()
			return nil, err
		}
		p := &loadProc{Child: c}
		l.procs = append(l.procs, p)
		go l.read(p)
		first += n
	}
	err := waitUntil(ctx, "load generators ready", time.Minute, l.changed.Wait, func() bool {
		for _, p := range l.procs {
			p.mu.Lock()
			ok := p.ready
			p.mu.Unlock()
			if !ok {
				return false
			}
		}
		return true
	}, l.describe)
	if err == nil {
		err = l.failed()
	}
	if err != nil {
		l.Stop()
		return nil, err
	}
	return l, nil
}

// read follows one process's events until its stdout ends.
func (l *loads) read(p *loadProc) {
	for line := range p.Lines() {
		var e loadgen.Event
		err := json.Unmarshal(line, &e)
		p.mu.Lock()
		switch {
		case err != nil:
			p.failure = fmt.Sprintf("unreadable line %q", line)
		case e.Error != "":
			p.failure = e.Error
		case e.Ready:
			p.ready = true
		case e.Marked:
			p.marked = true
		case e.Progress != nil:
			p.progress = *e.Progress
		}
		p.mu.Unlock()
		l.changed.Notify()
	}
	<-p.Done()
	p.mu.Lock()
	if p.failure == "" {
		p.failure = "exited"
	}
	p.mu.Unlock()
	l.changed.Notify()
}

// failed says which process failed or exited, with the end of its log.
func (l *loads) failed() error {
	for _, p := range l.procs {
		p.mu.Lock()
		f := p.failure
		p.mu.Unlock()
		if f != "" {
			select {
			case <-p.Done():
				return fmt.Errorf("load generator %s: %s; %w", p.Name, f, p.Exited())
			default:
				return fmt.Errorf("load generator %s: %s", p.Name, f)
			}
		}
	}
	return nil
}

func (l *loads) send(c loadgen.Command) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	for _, p := range l.procs {
		if err := p.Send(b); err != nil {
			return err
		}
	}
	return nil
}

// Start tells every process to connect its agents and returns the time just before.
func (l *loads) Start() (time.Time, error) {
	t0 := time.Now()
	return t0, l.send(loadgen.Command{Cmd: loadgen.CmdStart})
}

// Mark starts counting reconnections in every process and waits until each has.
func (l *loads) Mark(ctx context.Context) error {
	for _, p := range l.procs {
		p.mu.Lock()
		p.marked = false
		p.mu.Unlock()
	}
	if err := l.send(loadgen.Command{Cmd: loadgen.CmdMark}); err != nil {
		return err
	}
	return waitUntil(ctx, "load generators marked", 30*time.Second, l.changed.Wait, func() bool {
		for _, p := range l.procs {
			p.mu.Lock()
			ok := p.marked
			p.mu.Unlock()
			if !ok {
				return false
			}
		}
		return true
	}, l.describe)
}

// SetFail sets the fail rule of every process.
func (l *loads) SetFail(r loadgen.FailRule) error {
	return l.send(loadgen.Command{Cmd: loadgen.CmdFail, Fail: r})
}

// Total adds up the progress of all processes: counts are summed, times are the latest.
func (l *loads) Total() loadgen.Progress {
	t := loadgen.Progress{
		Received: map[string]int{}, Applied: map[string]int{}, Failed: map[string]int{}, LastOutcome: map[string]int64{},
		Offered: map[string]int{}, EverFailed: map[string]int{}, Refused: map[string]int{},
	}
	for _, p := range l.procs {
		p.mu.Lock()
		q := p.progress
		p.mu.Unlock()
		t.Agents += q.Agents
		t.Connected += q.Connected
		t.Reconnected += q.Reconnected
		t.ConnectFailures += q.ConnectFailures
		t.Handshakes += q.Handshakes
		t.Refusals += q.Refusals
		t.Probes.Add(q.Probes)
		t.LastConnect = max(t.LastConnect, q.LastConnect)
		for h, n := range q.Offered {
			t.Offered[h] += n
		}
		for h, n := range q.EverFailed {
			t.EverFailed[h] += n
		}
		for msg, n := range q.Refused {
			t.Refused[msg] += n
		}
		for h, n := range q.Received {
			t.Received[h] += n
		}
		for h, n := range q.Applied {
			t.Applied[h] += n
		}
		for h, n := range q.Failed {
			t.Failed[h] += n
		}
		for h, at := range q.LastOutcome {
			t.LastOutcome[h] = max(t.LastOutcome[h], at)
		}
	}
	return t
}

func (l *loads) describe() string {
	t := l.Total()
	s := fmt.Sprintf("agents %d, connected %d, reconnected since mark %d, failed connection attempts %d, applied %s",
		t.Agents, t.Connected, t.Reconnected, t.ConnectFailures, shortHashes(t.Applied))
	if len(t.Failed) > 0 {
		s += ", failed " + shortHashes(t.Failed)
	}
	if err := l.failed(); err != nil {
		s += "; " + err.Error()
	}
	return s
}

func shortHashes(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for h, n := range m {
		parts = append(parts, fmt.Sprintf("%d of %.12s", n, h))
	}
	return strings.Join(parts, ", ")
}

// waitFor waits until the total progress satisfies ok, or a process fails.
func (l *loads) waitFor(ctx context.Context, what string, timeout time.Duration, ok func(loadgen.Progress) bool) (loadgen.Progress, error) {
	var last loadgen.Progress
	var procErr error
	err := waitUntil(ctx, what, timeout, l.changed.Wait, func() bool {
		if procErr = l.failed(); procErr != nil {
			return true
		}
		last = l.Total()
		return ok(last)
	}, l.describe)
	if err == nil && procErr != nil {
		err = fmt.Errorf("%s: %w", what, procErr)
	}
	return last, err
}

// CPU is the processes' CPU time so far, in seconds, summed.
func (l *loads) CPU() float64 {
	total := 0.0
	for _, p := range l.procs {
		if u, err := process.UsageOf(p.Pid()); err == nil {
			total += u.CPU
		}
	}
	return total
}

// Stop disconnects every agent and ends the processes, killing those that do not end within a minute.
func (l *loads) Stop() {
	_ = l.send(loadgen.Command{Cmd: loadgen.CmdStop})
	var wg sync.WaitGroup
	for _, p := range l.procs {
		wg.Go(func() {
			if err := p.Stop(0, time.Minute); err != nil {
				fmt.Fprintln(os.Stderr, "bench:", err)
			}
		})
	}
	wg.Wait()
}
