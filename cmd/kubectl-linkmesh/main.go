// Command kubectl-linkmesh is the kubectl plugin of LinkMesh (`kubectl linkmesh`): it enrolls hosts into
// ManagedCollectors and shows the fleet. `make plugin` builds it; krew installs it from plugins/linkmesh.yaml.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/linkmesh/linkmesh-operator/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr})
	stop()
	os.Exit(code)
}
