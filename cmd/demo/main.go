// Command demo runs the operator on an embedded local control plane, applies config/samples, plays one node
// with the real upstream supervisor and collector and enrolls one host outside the cluster, printing status
// as it changes. `make demo` runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"go.uber.org/zap/zapcore"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/linkmesh/linkmesh-operator/internal/manifests"
	"github.com/linkmesh/linkmesh-operator/test/infrastructure/demo"
	"github.com/linkmesh/linkmesh-operator/test/infrastructure/localagent"
)

func main() {
	var o demo.Options
	var binDir string
	flag.StringVar(&o.RepoRoot, "repo", ".", "Repository root, holding config/.")
	flag.StringVar(&o.WorkDir, "workdir", ".demo", "Directory for the kubeconfig and the node's files.")
	flag.StringVar(&binDir, "bin", "", "Directory with opampsupervisor and otelcol (hack/e2e-binaries.sh prints it).")
	flag.StringVar(&o.ListenAddress, "listen", "127.0.0.1:4320", "The operator's OpAMP listener.")
	flag.StringVar(&o.ConsoleAddress, "console", "127.0.0.1:8082", "The operator's read-only web console; 0 turns it off.")
	flag.StringVar(&o.Node, "node", "node-agents", "The DaemonSet ManagedCollector of config/samples whose pod the demo plays.")
	flag.StringVar(&o.MirrorDir, "mirror-dir", "", "The operator's air-gap mirror for install-opamp.sh (make mirror stages one); without it no host is enrolled.")
	flag.StringVar(&o.Host, "host", "linux-hosts", "The External ManagedCollector of config/samples that the demo's host joins.")
	flag.StringVar(&o.HostSupervisorVersion, "host-supervisor-version", manifests.DefaultPodSupervisorVersion,
		"The version of the supervisor in --mirror-dir, which the host's installer is told.")
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.Level(zapcore.ErrorLevel)))
	if binDir == "" {
		fmt.Fprintln(os.Stderr, "--bin is required: run `make demo`")
		os.Exit(2)
	}
	o.Binaries = localagent.Binaries{Supervisor: filepath.Join(binDir, "opampsupervisor"), Collector: filepath.Join(binDir, "otelcol")}
	o.Out = os.Stdout

	ctx := stopOnSignal()
	fmt.Println("LinkMesh demo: Ctrl-C stops it and cleans up.")
	if err := demo.Run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// stopOnSignal is cancelled on the first SIGINT or SIGTERM. The demo then stops what it started, which takes
// a few seconds; a second signal (Ctrl-C pressed again, or timeout(1), which signals both the demo and its
// process group) must not cut that short and leave a control plane or collectors running, so only a third
// exits at once.
func stopOnSignal() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 3)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		cancel()
		<-sigs
		fmt.Fprintln(os.Stderr, "demo: still stopping the collectors, the operator and the control plane; a third signal quits without cleaning up")
		<-sigs
		os.Exit(1)
	}()
	return ctx
}
