// Command demo runs the operator on an embedded local control plane, applies config/samples and plays one
// node with the real upstream supervisor and collector, printing status as it changes. `make demo` runs it.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"go.uber.org/zap/zapcore"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

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
	flag.StringVar(&o.Node, "node", "node-agents", "The DaemonSet ManagedCollector of config/samples whose pod the demo plays.")
	flag.StringVar(&o.MirrorDir, "mirror-dir", "", "The operator's air-gap mirror for install-opamp.sh (make mirror stages one).")
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.Level(zapcore.ErrorLevel)))
	if binDir == "" {
		fmt.Fprintln(os.Stderr, "--bin is required: run `make demo`")
		os.Exit(2)
	}
	o.Binaries = localagent.Binaries{Supervisor: filepath.Join(binDir, "opampsupervisor"), Collector: filepath.Join(binDir, "otelcol")}
	o.Out = os.Stdout

	// Cancelled on SIGINT or SIGTERM; a second signal exits at once.
	ctx := ctrl.SetupSignalHandler()
	fmt.Println("LinkMesh demo: Ctrl-C stops it and cleans up.")
	if err := demo.Run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}
