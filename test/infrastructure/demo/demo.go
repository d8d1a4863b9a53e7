// Package demo runs the operator's main job on this machine with no cluster: a local control plane built
// from the envtest binaries, the operator, config/samples, one node played by the real upstream supervisor
// and collector, and one host outside the cluster enrolled as kubectl linkmesh enroll hands it out. It
// prints what a user would check as it changes, until its context ends, then stops everything quietly.
package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/cli"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
	"github.com/linkmesh/linkmesh-operator/internal/operator"
	"github.com/linkmesh/linkmesh-operator/test/infrastructure/localagent"
)

// Options of a demo run.
type Options struct {
	// RepoRoot holds config/crd/bases and config/samples.
	RepoRoot string
	// WorkDir receives the kubeconfig and the node's files.
	WorkDir string
	// Binaries are the supervisor and collector that play the node.
	Binaries localagent.Binaries
	// ListenAddress is the operator's OpAMP listener.
	ListenAddress string
	// Out receives the report.
	Out io.Writer
	// Node is the DaemonSet ManagedCollector from config/samples whose pod the node plays.
	Node string
	// MirrorDir is the operator's --mirror-dir, from which install-opamp.sh downloads; empty for none, and
	// then no host is enrolled (it would download from GitHub).
	MirrorDir string
	// Host is the External ManagedCollector of config/samples that the enrolled host joins.
	Host string
	// HostSupervisorVersion is the version of the supervisor in MirrorDir, passed to the installer.
	HostSupervisorVersion string
	// ConsoleAddress is where the operator serves its read-only web console, on loopback (no token needed).
	ConsoleAddress string
}

// settleTimeout bounds the wait at shutdown for the operator to record the stopped collectors.
const settleTimeout = 10 * time.Second

// Run runs the demo until ctx ends, then stops everything it started: the collectors first, then, once the
// operator has recorded them gone, the operator, then the control plane. Nothing is left in flight when
// the operator stops, so work cut short by the shutdown logs no errors.
func Run(ctx context.Context, o Options) (retErr error) {
	say := func(format string, args ...any) { fmt.Fprintf(o.Out, format+"\n", args...) }
	if err := os.MkdirAll(o.WorkDir, 0o755); err != nil {
		return err
	}

	say("Starting a local control plane (kube-apiserver and etcd)")
	te := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(o.RepoRoot, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := te.Start()
	if err != nil {
		return fmt.Errorf("starting the control plane: %w", err)
	}
	defer func() {
		if err := te.Stop(); err != nil {
			retErr = errors.Join(retErr, fmt.Errorf("stopping the control plane: %w", err))
		}
	}()
	user, err := te.AddUser(envtest.User{Name: "demo-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return err
	}
	kubeconfigPath := filepath.Join(o.WorkDir, "kubeconfig")
	if err := os.WriteFile(kubeconfigPath, kubeconfig, 0o600); err != nil {
		return err
	}
	say("  kubectl works against it: export KUBECONFIG=%s; so does the plugin: bin/kubectl-linkmesh status", kubeconfigPath)

	op, err := operator.New(cfg, operator.Options{MetricsAddr: "0", ProbeAddr: "0", OpAMPBindAddress: o.ListenAddress,
		MirrorDir: o.MirrorDir, ConsoleBindAddress: o.ConsoleAddress})
	if err != nil {
		return err
	}
	opCtx, stopOp := context.WithCancel(context.Background())
	opDone := make(chan error, 1)
	go func() { opDone <- op.Start(opCtx) }()
	defer func() {
		stopOp()
		if err := <-opDone; err != nil {
			retErr = errors.Join(retErr, err)
		}
	}()
	say("Operator running; collectors reach it at %s", op.ExternalURL())
	if addr := op.ConsoleAddr(); addr != nil {
		say("Web console (read-only): http://%s/", addr)
	}

	// The demo's own reads and writes go straight to the API server; the operator's cache is its own.
	c, err := client.New(cfg, client.Options{Scheme: op.GetScheme()})
	if err != nil {
		return err
	}
	if !op.GetCache().WaitForCacheSync(ctx) {
		return errors.New("the operator's cache did not sync")
	}
	if err := applySamples(ctx, c, filepath.Join(o.RepoRoot, "config", "samples")); err != nil {
		return err
	}
	say("Applied config/samples")

	var procs []*localagent.Process
	// Deferred after the operator's and the control plane's stops, so it runs before them: the collectors
	// have stopped and the operator has recorded it before anything of the operator is cancelled.
	defer func() {
		for _, p := range procs {
			if err := p.Stop(15 * time.Second); err != nil {
				retErr = errors.Join(retErr, err)
			}
		}
		settle(c, o.Node, o.Host)
	}()

	key := types.NamespacedName{Namespace: "default", Name: o.Node}
	node, err := waitForNode(ctx, c, key, filepath.Join(o.WorkDir, "node"), o.Binaries)
	if err != nil {
		return err
	}
	proc, err := node.Start()
	if err != nil {
		return err
	}
	procs = append(procs, proc)
	say("Playing node demo-node of DaemonSet %s: the real supervisor runs the real collector (logs: %s)", naming.DaemonSet(o.Node), node.LogPath())
	if err := playDaemonSetController(ctx, c, types.NamespacedName{Namespace: key.Namespace, Name: naming.DaemonSet(o.Node)}); err != nil {
		return err
	}

	if o.MirrorDir != "" && o.Host != "" {
		host, err := enrollHost(ctx, c, o, say)
		if err != nil {
			return err
		}
		procs = append(procs, host)
	}
	say("")

	return report(ctx, c, o.Out, key, procs)
}

// playDaemonSetController writes the DaemonSet's status as the DaemonSet controller would with the one node
// the demo plays running its pod: envtest runs no controllers, and without it nothing is desired.
func playDaemonSetController(ctx context.Context, c client.Client, key types.NamespacedName) error {
	ds := &appsv1.DaemonSet{}
	for {
		err := c.Get(ctx, key, ds)
		if err == nil {
			break
		}
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("reading DaemonSet %s: %w", key.Name, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	want := appsv1.DaemonSetStatus{
		CurrentNumberScheduled: 1, DesiredNumberScheduled: 1, NumberReady: 1, NumberAvailable: 1,
		UpdatedNumberScheduled: 1, ObservedGeneration: ds.Generation,
	}
	if equality.Semantic.DeepEqual(ds.Status, want) {
		return nil
	}
	patch := client.MergeFrom(ds.DeepCopy())
	ds.Status = want
	if err := c.Status().Patch(ctx, ds, patch, client.FieldOwner("demo-daemonset-controller")); err != nil {
		return fmt.Errorf("writing the status of DaemonSet %s: %w", key.Name, err)
	}
	return nil
}

// enrollHost enrolls a host outside the cluster as a user would: a fresh EnrollmentToken and its install
// line from the plugin's code, the line run as printed (plus --root and --no-start: the host is a
// directory of this machine), then the supervisor the installer put there.
func enrollHost(ctx context.Context, c client.Client, o Options, say func(string, ...any)) (*localagent.Process, error) {
	root, err := filepath.Abs(filepath.Join(o.WorkDir, "host"))
	if err != nil {
		return nil, err
	}
	// A fresh host each run: a previous run's instance belongs to a control plane that is gone.
	if err := os.RemoveAll(root); err != nil {
		return nil, err
	}
	moved, err := sameMachinePorts(ctx, c, types.NamespacedName{Namespace: "default", Name: o.Host})
	if err != nil {
		return nil, err
	}
	if moved {
		say("Moved the OTLP receiver of %s to 127.0.0.1:%s: its host shares this machine with the node's collector, which has 4317", o.Host, hostOTLPPort)
	}
	en, err := cli.Enroll(ctx, c, cli.EnrollOptions{
		Namespace: "default", Collector: o.Host, Name: "demo-host", Description: "the demo's host, " + root,
		SupervisorVersion: o.HostSupervisorVersion,
	})
	if err != nil {
		return nil, err
	}
	args := " --root " + filepath.Join(o.WorkDir, "host") + " --no-start"
	say("Enrolling a host outside the cluster into %s, as `kubectl linkmesh enroll %s --name demo-host --supervisor-version %s` prints it (token elided here):",
		o.Host, o.Host, o.HostSupervisorVersion)
	say("  %s%s", strings.Replace(en.Command, en.Token, en.Token[:len("lme_")]+"...", 1), args)

	shims := filepath.Join(o.WorkDir, "bin")
	if err := os.MkdirAll(shims, 0o755); err != nil {
		return nil, err
	}
	// The host is a directory owned by you: a real sudo would install as root and ask for a password.
	if err := os.WriteFile(filepath.Join(shims, "sudo"), []byte("#!/bin/sh\n# The demo's host installs as you.\nexec \"$@\"\n"), 0o755); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "sh", "-c", en.Command+args)
	cmd.Env = append(os.Environ(), "PATH="+shims+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		say("    %s", line)
	}
	if err != nil {
		return nil, fmt.Errorf("the installer failed: %w", err)
	}
	host, err := localagent.Installed(root)
	if err != nil {
		return nil, err
	}
	proc, err := host.Start()
	if err != nil {
		return nil, err
	}
	say("Started the installed supervisor of the host (logs: %s)", host.LogPath())
	return proc, nil
}

// sameMachinePorts moves the External sample's OTLP receiver off the ports of the node's collector, and
// says whether it had to: on a real host it has the machine to itself, here both run side by side.
func sameMachinePorts(ctx context.Context, c client.Client, key types.NamespacedName) (bool, error) {
	mc := &v1alpha1.ManagedCollector{}
	if err := c.Get(ctx, key, mc); err != nil {
		return false, fmt.Errorf("reading ManagedCollector %s: %w", key.Name, err)
	}
	moved := strings.ReplaceAll(mc.Spec.Config, "127.0.0.1:4317", "127.0.0.1:"+hostOTLPPort)
	if moved == mc.Spec.Config {
		return false, nil
	}
	patch := client.MergeFrom(mc.DeepCopy())
	mc.Spec.Config = moved
	if err := c.Patch(ctx, mc, patch); err != nil {
		return false, fmt.Errorf("moving the OTLP port of %s: %w", key.Name, err)
	}
	return true, nil
}

// hostOTLPPort is where the enrolled host's collector listens for OTLP/gRPC, beside the node's 4317.
const hostOTLPPort = "14317"

// settle waits until the operator has recorded the stopped collectors: no collector connected and the
// Disconnected events written. Until then it is still reconciling and writing events, and stopping it
// would cut those writes short.
func settle(c client.Client, collectors ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	// Until the deadline, a failed read is a reason to look again, not to stop sooner.
	_ = wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		done, err := settled(ctx, c, collectors)
		return done && err == nil, nil
	})
}

// settled says whether no collector of collectors is connected and each has its Disconnected event.
func settled(ctx context.Context, c client.Client, collectors []string) (bool, error) {
	events := &eventsv1.EventList{}
	if err := c.List(ctx, events, client.InNamespace("default")); err != nil {
		return false, err
	}
	for _, name := range collectors {
		mc := &v1alpha1.ManagedCollector{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: "default", Name: name}, mc); err != nil {
			return false, err
		}
		for _, a := range mc.Status.Agents {
			if a.Connected {
				return false, nil
			}
			if !slices.ContainsFunc(events.Items, func(e eventsv1.Event) bool {
				return e.Reason == v1alpha1.EventDisconnected && e.Regarding.Name == name && strings.Contains(e.Note, a.InstanceUID)
			}) {
				return false, nil
			}
		}
	}
	return true, nil
}

// applySamples creates every object in dir's YAML files.
func applySamples(ctx context.Context, c client.Client, dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, "collectors_*.yaml"))
	if err != nil {
		return err
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			u := &unstructured.Unstructured{}
			if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
			if err := c.Create(ctx, u); err != nil {
				return fmt.Errorf("creating %s %s: %w", u.GetKind(), u.GetName(), err)
			}
		}
	}
	return nil
}

// waitForNode waits for the operator to render the pod's ConfigMap and Secret, then prepares the node.
func waitForNode(ctx context.Context, c client.Client, key types.NamespacedName, dir string, bin localagent.Binaries) (*localagent.Node, error) {
	for {
		n, err := localagent.FromCluster(ctx, c, key, dir, bin, "demo-node", key.Name+"-collector-demo")
		if err == nil {
			return n, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// report prints the ManagedCollectors and EnrollmentTokens as kubectl get would, and new events, whenever
// they change; it keeps the DaemonSet's status in step with its generation, as the DaemonSet controller
// would.
func report(ctx context.Context, c client.Client, out io.Writer, node types.NamespacedName, procs []*localagent.Process) error {
	var last string
	seen := map[types.UID]bool{}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	exited := make(chan struct{})
	for _, p := range procs {
		go func() {
			select {
			case <-p.Exited():
				close(exited)
			case <-ctx.Done():
			}
		}()
	}
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(out, "\nStopping: the collectors, then (once the operator has seen them go) the operator and the control plane")
			return nil
		case <-exited:
			return errors.New("a supervisor exited; see its log")
		case <-tick.C:
		}
		if err := playDaemonSetController(ctx, c, types.NamespacedName{Namespace: node.Namespace, Name: naming.DaemonSet(node.Name)}); err != nil && ctx.Err() == nil {
			ctrl.Log.Error(err, "Playing the DaemonSet controller")
		}
		table, err := tables(ctx, c)
		if err != nil {
			if ctx.Err() == nil {
				ctrl.Log.Error(err, "Reading status")
			}
			continue
		}
		if table != last {
			fmt.Fprintf(out, "%s  $ kubectl get mc,et\n%s\n", time.Now().Format(time.TimeOnly), table)
			last = table
		}
		evs, err := newEvents(ctx, c, seen)
		if err == nil && evs != "" {
			fmt.Fprintf(out, "%s  events:\n%s\n", time.Now().Format(time.TimeOnly), evs)
		}
	}
}

func tables(ctx context.Context, c client.Client) (string, error) {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 4, 3, ' ', 0)
	mcs := &v1alpha1.ManagedCollectorList{}
	if err := c.List(ctx, mcs); err != nil {
		return "", err
	}
	sort.Slice(mcs.Items, func(i, j int) bool { return mcs.Items[i].Name < mcs.Items[j].Name })
	fmt.Fprintln(w, "NAME\tMODE\tREADY\tCONNECTED\tAPPLIED\tREASON")
	for _, mc := range mcs.Items {
		fmt.Fprintf(w, "managedcollector/%s\t%s\t%s\t%s\t%s\t%s\n", mc.Name, mc.Spec.Mode,
			condStatus(mc.Status.Conditions, v1alpha1.ConditionReady), mc.Status.Connected,
			condStatus(mc.Status.Conditions, v1alpha1.ConditionConfigApplied), condReason(mc.Status.Conditions, v1alpha1.ConditionReady))
	}
	ets := &v1alpha1.EnrollmentTokenList{}
	if err := c.List(ctx, ets); err != nil {
		return "", err
	}
	sort.Slice(ets.Items, func(i, j int) bool { return ets.Items[i].Name < ets.Items[j].Name })
	fmt.Fprintln(w, "\nNAME\tCOLLECTOR\tPHASE\tEXPIRES")
	for _, et := range ets.Items {
		expires := ""
		// A redeemed token does not expire; an expired or revoked one has nothing left to count down.
		if et.Status.ExpiresAt != nil && et.Status.Phase == v1alpha1.TokenPending {
			expires = duration.HumanDuration(time.Until(et.Status.ExpiresAt.Time).Round(time.Minute))
		}
		fmt.Fprintf(w, "enrollmenttoken/%s\t%s\t%s\t%s\n", et.Name, et.Spec.CollectorRef.Name, et.Status.Phase, expires)
	}
	if err := w.Flush(); err != nil {
		return "", err
	}
	return b.String(), nil
}

func newEvents(ctx context.Context, c client.Client, seen map[types.UID]bool) (string, error) {
	list := &eventsv1.EventList{}
	if err := c.List(ctx, list); err != nil {
		return "", err
	}
	sort.Slice(list.Items, func(i, j int) bool {
		return list.Items[i].CreationTimestamp.Before(&list.Items[j].CreationTimestamp)
	})
	var b strings.Builder
	for _, e := range list.Items {
		if seen[e.UID] {
			continue
		}
		seen[e.UID] = true
		fmt.Fprintf(&b, "  %-7s %-15s %s/%s: %s\n", e.Type, e.Reason, strings.ToLower(e.Regarding.Kind), e.Regarding.Name, e.Note)
	}
	return b.String(), nil
}

func condStatus(conds []metav1.Condition, t string) string {
	if c := apimeta.FindStatusCondition(conds, t); c != nil {
		return string(c.Status)
	}
	return ""
}

func condReason(conds []metav1.Condition, t string) string {
	if c := apimeta.FindStatusCondition(conds, t); c != nil {
		return c.Reason
	}
	return ""
}
