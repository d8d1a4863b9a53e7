package main

import (
	"context"
	"fmt"
	"os"

	"github.com/linkmesh/linkmesh-operator/test/framework/manager"
)

// operator is a running manager binary (test/framework/manager).
type operator struct {
	*manager.Manager
}

// startOperator runs the manager against the control plane and waits until its probe says ready, which
// includes its OpAMP listener serving.
func startOperator(ctx context.Context, bin, name, dir, kubeconfig string, ports manager.Ports, args ...string) (*operator, error) {
	m, err := manager.Start(ctx, manager.Options{Binary: bin, Name: name, Dir: dir, Kubeconfig: kubeconfig, Ports: ports, Args: args})
	if err != nil {
		return nil, err
	}
	return &operator{m}, nil
}

// launchOperator starts the manager without waiting for it.
func launchOperator(bin, name, dir, kubeconfig string, ports manager.Ports, args ...string) (*operator, error) {
	m, err := manager.Launch(manager.Options{Binary: bin, Name: name, Dir: dir, Kubeconfig: kubeconfig, Ports: ports, Args: args})
	if err != nil {
		return nil, err
	}
	return &operator{m}, nil
}

// Stop ends the operator with SIGTERM, as Kubernetes does, and kills it if it does not end in time.
func (op *operator) Stop() {
	if err := op.Manager.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
	}
}
