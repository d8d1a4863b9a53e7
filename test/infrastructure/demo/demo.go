// Package demo runs the operator's main job on this machine with no cluster: a local control plane built
// from the envtest binaries, the operator, config/samples, and one node played by the real upstream
// supervisor and collector. It prints what a user would check as it changes, until its context ends.
package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/duration"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/downloads"
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
	// MirrorDir is the operator's --mirror-dir, from which install-opamp.sh downloads; empty for none.
	MirrorDir string
}

// Run runs the demo until ctx ends, then stops everything it started.
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
	say("  kubectl works against it: export KUBECONFIG=%s", kubeconfigPath)

	op, err := operator.New(cfg, operator.Options{MetricsAddr: "0", ProbeAddr: "0", OpAMPBindAddress: o.ListenAddress, MirrorDir: o.MirrorDir})
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
	if o.MirrorDir != "" {
		say("  a host enrolls with an EnrollmentToken's token, binaries from the mirror %s:", o.MirrorDir)
		say("  %s --root %s --no-start", downloads.InstallCommand(op.ExternalURL()), filepath.Join(o.WorkDir, "host"))
	}

	c := op.GetClient()
	if !op.GetCache().WaitForCacheSync(ctx) {
		return errors.New("the operator's cache did not sync")
	}
	if err := applySamples(ctx, c, filepath.Join(o.RepoRoot, "config", "samples")); err != nil {
		return err
	}
	say("Applied config/samples")

	key := types.NamespacedName{Namespace: "default", Name: o.Node}
	node, err := waitForNode(ctx, c, key, filepath.Join(o.WorkDir, "node"), o.Binaries)
	if err != nil {
		return err
	}
	proc, err := node.Start()
	if err != nil {
		return err
	}
	defer func() {
		if err := proc.Stop(15 * time.Second); err != nil {
			retErr = errors.Join(retErr, err)
		}
	}()
	say("Playing node demo-node: the real supervisor runs the real collector (logs: %s)", node.LogPath())
	say("")

	return report(ctx, c, o.Out, proc)
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
// they change.
func report(ctx context.Context, c client.Client, out io.Writer, proc *localagent.Process) error {
	var last string
	seen := map[types.UID]bool{}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(out, "\nStopping: the supervisor, the operator, then the control plane")
			return nil
		case <-proc.Exited():
			return errors.New("the supervisor exited; see its log")
		case <-tick.C:
		}
		table, err := tables(ctx, c)
		if err != nil {
			ctrl.Log.Error(err, "Reading status")
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
		if et.Status.ExpiresAt != nil {
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
