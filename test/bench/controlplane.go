package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/linkmesh/linkmesh-operator/test/framework/process"
)

// The control plane runs in a child process of its own (`bench controlplane`): envtest starts
// kube-apiserver and etcd in their own process groups, without a parent-death signal, so only a process
// that gets a signal when the bench dies (SIGTERM, as its parent-death signal) can stop them then.

// Kubeconfig files the control plane writes into its directory.
const (
	benchKubeconfig    = "bench.kubeconfig"
	operatorKubeconfig = "operator.kubeconfig"
)

// controlPlaneEvent is the control plane child's one stdout line.
type controlPlaneEvent struct {
	Ready bool   `json:"ready,omitempty"`
	Error string `json:"error,omitempty"`
}

// runControlPlane is `bench controlplane`: it starts envtest with the CRDs, writes the kubeconfigs, says
// ready, and stops the control plane when its stdin ends or it gets SIGTERM or SIGINT.
func runControlPlane(args []string) error {
	fs := flag.NewFlagSet("controlplane", flag.ContinueOnError)
	crds := fs.String("crds", "", "directory of the CRDs to install")
	dir := fs.String("dir", "", "directory to write the kubeconfigs into")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *crds == "" || *dir == "" {
		return errors.New("controlplane: -crds and -dir are required")
	}
	out := json.NewEncoder(os.Stdout)
	fail := func(err error) error {
		_ = out.Encode(controlPlaneEvent{Error: err.Error()})
		return err
	}
	// Signals from now on, so one that arrives during the start still stops what was started.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	te := &envtest.Environment{CRDDirectoryPaths: []string{*crds}, ErrorIfCRDPathMissing: true}
	// The API server's own periodic requests (the kubernetes Service's endpoints, its identity lease)
	// would count as the operator's: apiserver_request_total does not say who asked.
	// Their output goes to this process's log (controlplane.log in the run's directory).
	te.ControlPlane.GetAPIServer().Out, te.ControlPlane.GetAPIServer().Err = os.Stderr, os.Stderr
	te.ControlPlane.GetAPIServer().Configure().
		Set("endpoint-reconciler-type", "none").
		Set("feature-gates", "APIServerIdentity=false,UnknownVersionInteroperabilityProxy=false")
	if _, err := te.Start(); err != nil {
		_ = te.Stop()
		return fail(fmt.Errorf("starting envtest (is KUBEBUILDER_ASSETS set? see hack/envtest-binaries.sh): %w", err))
	}
	defer func() {
		if err := te.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping envtest:", err)
		}
	}()
	for name, file := range map[string]string{"bench": benchKubeconfig, "linkmesh-operator": operatorKubeconfig} {
		u, err := te.AddUser(envtest.User{Name: name, Groups: []string{"system:masters"}}, nil)
		if err != nil {
			return fail(fmt.Errorf("adding the user %s: %w", name, err))
		}
		kc, err := u.KubeConfig()
		if err != nil {
			return fail(err)
		}
		if err := os.WriteFile(filepath.Join(*dir, file), kc, 0o600); err != nil {
			return fail(err)
		}
	}
	if err := out.Encode(controlPlaneEvent{Ready: true}); err != nil {
		return err
	}
	stdinDone := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(stdinDone)
	}()
	select {
	case <-stdinDone:
	case <-sigs:
	}
	return nil
}

// controlPlane is the parent's handle on the control plane child.
type controlPlane struct {
	*process.Child
	dir string
}

// startControlPlane starts `bench controlplane` and waits until the API server serves.
func startControlPlane(ctx context.Context, self, dir, crds string) (*controlPlane, error) {
	c, err := process.Start("controlplane", dir, syscall.SIGTERM, nil, self, "controlplane", "-crds", crds, "-dir", dir)
	if err != nil {
		return nil, err
	}
	cp := &controlPlane{Child: c, dir: dir}
	timeout := 3 * time.Minute
	select {
	case line, ok := <-c.Lines():
		var e controlPlaneEvent
		if ok {
			if err := json.Unmarshal(line, &e); err != nil {
				e.Error = fmt.Sprintf("unreadable line %q", line)
			}
		}
		if !ok || !e.Ready {
			cp.Stop()
			return nil, fmt.Errorf("the control plane did not start: %s; %w", e.Error, c.Exited())
		}
	case <-time.After(timeout):
		cp.Stop()
		return nil, fmt.Errorf("the control plane did not start within %s; its log is %s", timeout, c.Log)
	case <-ctx.Done():
		cp.Stop()
		return nil, context.Cause(ctx)
	}
	return cp, nil
}

// Kubeconfig is the path of one of the kubeconfig files.
func (cp *controlPlane) Kubeconfig(file string) string { return filepath.Join(cp.dir, file) }

// Stop ends the control plane: its stdin closes, and it stops kube-apiserver and etcd.
func (cp *controlPlane) Stop() {
	if err := cp.Child.Stop(0, 60*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
	}
}
