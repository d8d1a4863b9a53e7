// Command manager runs the LinkMesh operator.
package main

import (
	"flag"
	"fmt"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/linkmesh/linkmesh-operator/internal/manifests"
	"github.com/linkmesh/linkmesh-operator/internal/operator"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run() error {
	var o operator.Options
	flag.StringVar(&o.MetricsAddr, "metrics-bind-address", ":8080", "Address of the Prometheus metrics endpoint; 0 disables it.")
	flag.StringVar(&o.ProbeAddr, "health-probe-bind-address", ":8081", "Address of the manager's /healthz and /readyz.")
	flag.BoolVar(&o.LeaderElect, "leader-elect", false, "Elect one replica to run the reconcilers.")
	flag.StringVar(&o.ExternalURL, "external-url", "",
		"Base URL (http:// or https://) at which collectors reach the operator, rendered into supervisor.yaml. "+
			"Defaults to the in-cluster Service http://linkmesh-operator.<POD_NAMESPACE>.svc:4320.")
	flag.StringVar(&o.AgentImage, "agent-image", manifests.DefaultSupervisorImage,
		"Default image of collector pods (supervisor, collector and linkmesh-agent-init) for ManagedCollectors without images.supervisor.")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))

	if o.ExternalURL == "" {
		ns := os.Getenv("POD_NAMESPACE")
		if ns == "" {
			ns = "linkmesh-system"
		}
		o.ExternalURL = operator.DefaultExternalURL(ns)
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading the kubeconfig: %w", err)
	}
	mgr, err := operator.New(cfg, o)
	if err != nil {
		return err
	}
	ctrl.Log.WithName("setup").Info("Starting the operator", "externalURL", o.ExternalURL)
	return mgr.Start(ctrl.SetupSignalHandler())
}
