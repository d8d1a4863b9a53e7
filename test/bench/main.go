// Command bench is the fleet benchmark of the LinkMesh operator (`make bench`, `make bench-smoke`).
//
// It starts a real kube-apiserver and etcd (envtest) with the CRDs, runs the manager binary against it as
// a process of its own, and connects N simulated upstream supervisors from load generator processes. It
// measures how long until all are connected, configured and shown in status, how long a spec.config edit
// takes to reach all, the operator's memory and CPU, and the API requests it makes; then it runs the same
// ramp and fan-out against a bare opamp-go server, the floor, and prints each figure's ratio to it.
//
// Subcommands, used by the bench itself: `bench load` (a load generator), `bench floor` (the floor
// server), `bench controlplane` (envtest in a process of its own).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap/zapcore"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/linkmesh/linkmesh-operator/test/bench/floor"
	"github.com/linkmesh/linkmesh-operator/test/framework/manager"
	"github.com/linkmesh/linkmesh-operator/test/framework/process"
)

func main() {
	// Only errors of controller-runtime and client-go (the bench's informers, envtest): the bench's own
	// output is its tables.
	ctrllog.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel)))
	var err error
	args := os.Args[1:]
	sub := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	switch sub {
	case "":
		err = runBench(args)
	case "load":
		err = runLoad(args)
	case "floor":
		err = runFloor(args)
	case "controlplane":
		err = runControlPlane(args)
	default:
		err = fmt.Errorf("unknown subcommand %q: run bench -h", sub)
	}
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
		os.Exit(1)
	}
}

// runFloor is `bench floor`: the floor server, until its stdin ends.
func runFloor(args []string) error {
	fs := flag.NewFlagSet("floor", flag.ContinueOnError)
	addr := fs.String("listen", "127.0.0.1:0", "address to listen on")
	configFile := fs.String("config-file", "", "file with the config to push")
	if err := fs.Parse(args); err != nil {
		return err
	}
	config, err := os.ReadFile(*configFile)
	if err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	return floor.Serve(*addr, string(config), os.Stdin, os.Stdout)
}

// options are the flags of a bench run.
type options struct {
	sizes        []int
	scenarios    map[string]bool
	smoke        bool
	floor        bool
	manager      string
	crds         string
	perProcess   int
	steady       time.Duration
	settle       time.Duration
	timeout      time.Duration
	heartbeat    time.Duration
	applyDelay   time.Duration
	enrollN      int
	restartN     int
	replicasN    int
	replicasKill string
	standby      bool
	rollout      rolloutOptions
	flood        floodOptions
	pprofDir     string
	pprofRamp    time.Duration
	pprofFanOut  time.Duration
	keep         bool
	self, tmpDir string
}

// Scenarios.
const (
	scenarioFleet      = "fleet"
	scenarioEnrollment = "enrollment"
	scenarioRestart    = "restart"
	scenarioReplicas   = "replicas"
	scenarioRollout    = "rollout"
	scenarioFlood      = "flood"
)

func parseOptions(args []string) (*options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: bench [flags]\n\nThe fleet benchmark of the LinkMesh operator; see README.md, Performance.\n\nFlags:")
		fs.PrintDefaults()
	}
	o := &options{}
	sizes := fs.String("n", "1000,5000,10000", "comma-separated fleet sizes of the fleet scenario")
	scenarios := fs.String("scenarios", "fleet,enrollment,restart,replicas,rollout,flood", "comma-separated scenarios: fleet (ramp, steady, fan-out, floor), enrollment (hosts with their own EnrollmentTokens), restart (kill the operator with the fleet connected), replicas (two replicas with leader election, then one killed), rollout (a progressive rollout, then one rolled back), flood (one pod credential used by thousands of instance UIDs)")
	fs.BoolVar(&o.smoke, "smoke", false, "check correctness and exit non-zero on a failure: all connected and configured, exact status counts, the edit reaches all, no owned-object write in steady state; no floor, no wall-clock limits")
	fs.BoolVar(&o.floor, "floor", true, "also measure the floor (a bare opamp-go server) and print the ratios")
	fs.StringVar(&o.manager, "manager", "", "the manager binary; empty builds ./cmd/manager")
	fs.StringVar(&o.crds, "crds", "config/crd/bases", "directory of the CRDs")
	fs.IntVar(&o.perProcess, "per-process", 5000, "simulated supervisors per load generator process (each holds a socket; the open-files limit is per process)")
	fs.DurationVar(&o.steady, "steady", 10*time.Second, "length of the steady window, in which nothing changes")
	fs.DurationVar(&o.settle, "settle", 2*time.Second, "pause between the ramp and the steady window, longer than the status write interval")
	fs.DurationVar(&o.timeout, "timeout", 3*time.Minute, "time-out of every wait")
	fs.DurationVar(&o.heartbeat, "heartbeat", 10*time.Second, "heartbeat interval of the simulated supervisors (the supervisor's default is 30s); 10s puts one heartbeat per agent into the steady window")
	fs.DurationVar(&o.applyDelay, "apply-delay", 0, "simulated collector restart between APPLYING and APPLIED")
	fs.IntVar(&o.enrollN, "enroll-n", 1000, "hosts (and EnrollmentTokens) of the enrollment scenario")
	fs.IntVar(&o.restartN, "restart-n", 10000, "collectors of the restart scenario")
	fs.IntVar(&o.replicasN, "replicas-n", 20000, "collectors of the replicas scenario, in two load generator processes")
	fs.StringVar(&o.replicasKill, "replicas-kill", killOther, "which replica the replicas scenario kills: other (the one that does not lead) or leader")
	fs.BoolVar(&o.standby, "replicas-standby", true, "start a third replica before the kill, for the killed replica's collectors to move to: with an open-files limit of 20000 per process the survivor cannot hold 20000 connections; false sends them to the survivor")
	rolloutSteps := fs.String("rollout-steps", "1%,10%,100%", "spec.rollout.steps of the rollout scenario: counts, then percentages, the last 100%")
	fs.IntVar(&o.rollout.n, "rollout-n", 10000, "collectors of the rollout scenario")
	fs.DurationVar(&o.rollout.bake, "rollout-bake", 10*time.Second, "spec.rollout.bakeTime of the rollout scenario")
	fs.Float64Var(&o.rollout.failFraction, "rollout-fail-fraction", 0.01, "fraction of the collectors that fail the rollout scenario's second config")
	fs.StringVar(&o.rollout.failBy, "rollout-fail-by", failByRank, "which collectors fail the second config: rank (those the rollout offers it first, by the rank of their instance UID) or index (a spread by index, whatever their rank)")
	fs.IntVar(&o.flood.n, "flood-n", 7000, "connections of the flood scenario, each with its own instance UID, all with one pod credential")
	fs.IntVar(&o.flood.others, "flood-others", 100, "collectors of the other ManagedCollector, which must not notice the flood")
	fs.IntVar(&o.flood.maxCollectors, "flood-max", 0, "spec.maxCollectors of the flooded ManagedCollector; 0 leaves the default")
	fs.DurationVar(&o.flood.hold, "flood-hold", 20*time.Second, "how long the flood lasts from its start")
	fs.DurationVar(&o.flood.after, "flood-after", 30*time.Second, "how long after the flood the operator's memory is measured again")
	fs.BoolVar(&o.flood.retry, "flood-retry", true, "refused flood agents reconnect as opamp-go does (at once after a ServerErrorResponse, after Retry-After after a 503 at the upgrade); false: they stop at their first refusal")
	fs.StringVar(&o.pprofDir, "pprof", "", "directory to save CPU and heap profiles of the operator during each ramp and fan-out")
	fs.DurationVar(&o.pprofRamp, "pprof-ramp", 10*time.Second, "length of the CPU profile from the start of a ramp")
	fs.DurationVar(&o.pprofFanOut, "pprof-fanout", 5*time.Second, "length of the CPU profile from a spec.config edit")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (logs of every process, kubeconfigs) also after a success")
	var err error
	if err = fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for s := range strings.SplitSeq(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("-n: %q is not a positive number of collectors", s)
		}
		o.sizes = append(o.sizes, n)
	}
	o.scenarios = map[string]bool{}
	for s := range strings.SplitSeq(*scenarios, ",") {
		switch s = strings.TrimSpace(s); s {
		case scenarioFleet, scenarioEnrollment, scenarioRestart, scenarioReplicas, scenarioRollout, scenarioFlood:
			o.scenarios[s] = true
		default:
			return nil, fmt.Errorf("-scenarios: unknown scenario %q (fleet, enrollment, restart, replicas, rollout, flood)", s)
		}
	}
	if o.rollout.steps, err = parseSteps(*rolloutSteps); err != nil {
		return nil, err
	}
	if err := o.rollout.validate(); err != nil {
		return nil, err
	}
	if err := o.flood.validate(); err != nil {
		return nil, err
	}
	if o.smoke {
		o.floor = false
	}
	if o.perProcess <= 0 || o.perProcess > 9000 {
		return nil, fmt.Errorf("-per-process %d: between 1 and 9000, as each agent holds a socket and a process may open 20000 files", o.perProcess)
	}
	if o.enrollN <= 0 || o.restartN <= 0 {
		return nil, errors.New("-enroll-n and -restart-n must be positive")
	}
	if o.replicasN <= 0 || o.replicasN > 20000 {
		return nil, fmt.Errorf("-replicas-n %d: between 1 and 20000, in two load generator processes that may open 20000 files each", o.replicasN)
	}
	if o.replicasKill != killOther && o.replicasKill != killLeader {
		return nil, fmt.Errorf("-replicas-kill %q: other or leader", o.replicasKill)
	}
	if _, err := os.Stat(filepath.Join(o.crds)); err != nil {
		return nil, fmt.Errorf("-crds: %w (run from the repository's top directory)", err)
	}
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return nil, errors.New("KUBEBUILDER_ASSETS is not set: run `make bench`, or set it to the output of hack/envtest-binaries.sh")
	}
	return o, nil
}

// runBench runs the scenarios. SIGINT and SIGTERM cancel the run, which then stops what it started;
// a second signal kills every child at once.
func runBench(args []string) error {
	o, err := parseOptions(args)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	defer process.KillAll()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		s, ok := <-sigs
		if !ok {
			return
		}
		fmt.Fprintf(os.Stderr, "bench: %v: stopping (again to kill everything now)\n", s)
		cancel(fmt.Errorf("interrupted by %v", s))
		if _, ok := <-sigs; ok {
			process.KillAll()
			os.Exit(130)
		}
	}()

	if o.self, err = os.Executable(); err != nil {
		return err
	}
	if o.tmpDir, err = os.MkdirTemp("", "linkmesh-bench-"); err != nil {
		return err
	}
	ok := false
	defer func() {
		if ok && !o.keep {
			_ = os.RemoveAll(o.tmpDir)
			return
		}
		fmt.Fprintf(os.Stderr, "bench: the logs of every process are in %s\n", o.tmpDir)
	}()
	if o.pprofDir != "" {
		if err := os.MkdirAll(o.pprofDir, 0o755); err != nil {
			return err
		}
	}
	if o.manager == "" {
		o.manager = filepath.Join(o.tmpDir, "manager")
		progress("building ./cmd/manager")
		if err := manager.Build(ctx, ".", o.manager); err != nil {
			return err
		}
	}

	r := &report{}
	if o.scenarios[scenarioFleet] {
		for _, n := range o.sizes {
			res, err := runFleet(ctx, o, n)
			if err != nil {
				return fmt.Errorf("fleet of %d: %w", n, err)
			}
			res.print(os.Stdout)
			r.fleets = append(r.fleets, res)
		}
		if len(r.fleets) > 1 {
			r.printSummary(os.Stdout)
		}
	}
	if o.scenarios[scenarioEnrollment] {
		res, err := runEnrollment(ctx, o, o.enrollN)
		if err != nil {
			return fmt.Errorf("enrollment of %d hosts: %w", o.enrollN, err)
		}
		res.print(os.Stdout)
	}
	if o.scenarios[scenarioRestart] {
		res, err := runRestart(ctx, o, o.restartN)
		if err != nil {
			return fmt.Errorf("restart storm with %d collectors: %w", o.restartN, err)
		}
		res.print(os.Stdout)
	}
	if o.scenarios[scenarioReplicas] {
		res, err := runReplicas(ctx, o, o.replicasN)
		if err != nil {
			return fmt.Errorf("%d collectors over %d replicas: %w", o.replicasN, replicaCount, err)
		}
		res.print(os.Stdout)
	}
	if o.scenarios[scenarioRollout] {
		res, err := runRollout(ctx, o)
		if err != nil {
			return fmt.Errorf("progressive rollout over %d collectors: %w", o.rollout.n, err)
		}
		res.print(os.Stdout)
	}
	if o.scenarios[scenarioFlood] {
		res, err := runFlood(ctx, o)
		if err != nil {
			return fmt.Errorf("flood of %d instance UIDs with one credential: %w", o.flood.n, err)
		}
		res.print(os.Stdout)
	}
	if o.smoke {
		var failures []string
		for _, f := range r.fleets {
			failures = append(failures, f.failures...)
		}
		if len(failures) > 0 {
			return fmt.Errorf("smoke failed:\n  %s", strings.Join(failures, "\n  "))
		}
		fmt.Println("bench-smoke: ok")
	}
	ok = true
	return nil
}

// progress tells the person running the bench what it is doing; results go to stdout.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
