// Command manager runs the LinkMesh operator.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	"go.uber.org/zap/zapcore"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/linkmesh/linkmesh-operator/internal/console"
	"github.com/linkmesh/linkmesh-operator/internal/listener"
	"github.com/linkmesh/linkmesh-operator/internal/manifests"
	"github.com/linkmesh/linkmesh-operator/internal/operator"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// memoryLimitShare is the part of the container's memory limit the Go runtime keeps the heap under: the rest
// is stacks, buffers and what the runtime does not count.
const memoryLimitShare = 0.9

// setMemoryLimit gives the Go runtime a soft memory limit of memoryLimitShare of the container's, from
// LINKMESH_MEMORY_LIMIT (bytes, the downward API's limits.memory), unless GOMEMLIMIT sets one: the runtime
// then collects harder before the kernel kills the operator, and every collector with it.
func setMemoryLimit() (int64, error) {
	raw := os.Getenv("LINKMESH_MEMORY_LIMIT")
	if raw == "" || os.Getenv("GOMEMLIMIT") != "" {
		return 0, nil
	}
	limit, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || limit <= 0 {
		return 0, fmt.Errorf("LINKMESH_MEMORY_LIMIT=%q is not a number of bytes", raw)
	}
	// A container without a limit gets the node's memory here, which is no limit worth setting.
	soft := int64(float64(limit) * memoryLimitShare)
	debug.SetMemoryLimit(soft)
	return soft, nil
}

func run() error {
	soft, err := setMemoryLimit()
	if err != nil {
		return err
	}
	var o operator.Options
	flag.StringVar(&o.MetricsAddr, "metrics-bind-address", ":8080", "Address of the Prometheus metrics endpoint; 0 disables it.")
	flag.StringVar(&o.ProbeAddr, "health-probe-bind-address", ":8081", "Address of the manager's /healthz and /readyz.")
	flag.StringVar(&o.PprofAddr, "pprof-bind-address", "0",
		"Address of net/http/pprof (/debug/pprof/) for profiling the operator; 0 disables it. Bind it to loopback: profiles expose the process's memory.")
	flag.BoolVar(&o.LeaderElect, "leader-elect", false,
		"Elect one replica to run the reconcilers; every replica serves collectors. Needed for more than one replica.")
	flag.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", "",
		"Namespace of the leader election Lease and of the replicas' Leases; defaults to POD_NAMESPACE, and "+
			"is required with --leader-elect outside a pod.")
	flag.DurationVar(&o.LeaderElection.LeaseDuration, "leader-election-lease-duration", operator.LeaderElectionDefaults.LeaseDuration,
		"How long the other replicas wait, from the leader's last renewal, before one of them takes over.")
	flag.DurationVar(&o.LeaderElection.RenewDeadline, "leader-election-renew-deadline", operator.LeaderElectionDefaults.RenewDeadline,
		"How long the leader tries to renew its Lease before it gives up leading and the process stops.")
	flag.DurationVar(&o.LeaderElection.RetryPeriod, "leader-election-retry-period", operator.LeaderElectionDefaults.RetryPeriod,
		"How often the leader renews its Lease and the others look at it.")
	flag.DurationVar(&o.DrainPeriod, "drain-period", 5*time.Second,
		"On shutdown, the time over which this replica closes its collectors' connections, so they reconnect "+
			"to the other replicas gradually.")
	flag.StringVar(&o.ExternalURL, "external-url", "",
		"Base URL (http:// or https://) at which collectors reach the operator, rendered into supervisor.yaml. "+
			"Defaults to the in-cluster Service http://linkmesh-operator.<POD_NAMESPACE>.svc:4320 in a pod, "+
			"and to the listener's own address outside one.")
	flag.StringVar(&o.OpAMPBindAddress, "opamp-bind-address", ":4320",
		"Address of the listener that serves /v1/opamp, /healthz and /readyz to collectors and hosts.")
	flag.StringVar(&o.TLSCertFile, "tls-cert-file", "", "PEM certificate of the listener; with --tls-key-file, collectors use wss://.")
	flag.StringVar(&o.TLSKeyFile, "tls-key-file", "", "PEM private key of the listener.")
	flag.IntVar(&o.ListenerLimits.MaxConnections, "max-connections", 0,
		fmt.Sprintf("Connections the listener holds at once, WebSockets included; more are answered 503 with "+
			"Retry-After. 0 means %d, or three quarters of the open-files limit when that is lower.", listener.DefaultMaxConnections))
	flag.IntVar(&o.ListenerLimits.MaxConnectionsPerAddress, "max-connections-per-address", listener.DefaultMaxConnectionsPerAddress,
		"Connections of one remote address (an IPv6 /64) opening or carrying a request at once, once the listener "+
			"holds three quarters of --max-connections; idle keep-alive connections and WebSockets do not count. More are "+
			"answered 503 with Retry-After. 0 turns the cap off. "+
			"Behind a proxy every collector has the proxy's address: see the README.")
	flag.DurationVar(&o.ListenerLimits.BodyReadTimeout, "body-read-timeout", listener.DefaultBodyReadTimeout,
		"Longest time a request body may take to arrive.")
	flag.Int64Var(&o.ListenerLimits.MinBodyRate, "min-body-rate", listener.DefaultMinBodyRate,
		fmt.Sprintf("Slowest rate, in bytes per second, at which a request body may arrive after its first %s.",
			listener.DefaultBodyRateGrace))
	flag.StringVar(&o.AgentImage, "agent-image", manifests.DefaultSupervisorImage,
		"Default image of collector pods (supervisor, collector and linkmesh-agent-init) for ManagedCollectors without images.supervisor.")
	flag.StringVar(&o.MirrorDir, "mirror-dir", "",
		"Directory of upstream otelcol-contrib and opampsupervisor release files (with .sha256 files) that "+
			"install-opamp.sh downloads from /api/v1/downloads/bin/ on air-gapped hosts; empty serves no mirror.")
	flag.StringVar(&o.ConsoleBindAddress, "console-bind-address", console.DefaultBindAddress,
		"Address of the read-only web console; 0 disables it. On loopback (the default) it is reached with "+
			"kubectl port-forward; on any other address every request needs a Kubernetes bearer token, checked "+
			"with TokenReview and SubjectAccessReview.")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	if zapOpts.Level != nil && zapOpts.Level.Enabled(zapcore.Level(-8)) {
		ctrl.Log.WithName("setup").Info("WARNING: from --zap-log-level=8 on, client-go logs the bodies of API " +
			"requests and responses, the tokens in the operator's Secrets included")
	}
	if err := checkLimits(&o.ListenerLimits); err != nil {
		return err
	}

	if ns := os.Getenv("POD_NAMESPACE"); o.ExternalURL == "" && ns != "" {
		o.ExternalURL = operator.DefaultExternalURL(ns)
	}
	if o.LeaderElectionNamespace == "" {
		o.LeaderElectionNamespace = os.Getenv("POD_NAMESPACE")
	}
	if o.LeaderElect && o.LeaderElectionNamespace == "" {
		return errors.New("--leader-elect needs --leader-election-namespace outside a pod (POD_NAMESPACE is not set)")
	}
	if err := o.LeaderElection.Check(); err != nil {
		return err
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading the kubeconfig: %w", err)
	}
	op, err := operator.New(cfg, o)
	if err != nil {
		return err
	}
	ctrl.Log.WithName("setup").Info("Starting the operator", "externalURL", op.ExternalURL(), "listener", op.ListenerAddr().String(),
		"console", op.ConsoleAddr(), "goMemoryLimit", soft)
	return op.Start(ctrl.SetupSignalHandler())
}

// checkLimits refuses values that would silently take a default, and turns the flag's 0 (no per-address
// cap) into the listener's negative.
func checkLimits(l *listener.Limits) error {
	switch {
	case l.MaxConnections < 0:
		return fmt.Errorf("--max-connections must be 0 (the default) or positive, not %d", l.MaxConnections)
	case l.MaxConnectionsPerAddress < 0:
		return fmt.Errorf("--max-connections-per-address must be 0 (no cap) or positive, not %d", l.MaxConnectionsPerAddress)
	case l.BodyReadTimeout <= 0:
		return fmt.Errorf("--body-read-timeout must be positive, not %s", l.BodyReadTimeout)
	case l.MinBodyRate <= 0:
		return fmt.Errorf("--min-body-rate must be positive, not %d", l.MinBodyRate)
	}
	if l.MaxConnectionsPerAddress == 0 {
		l.MaxConnectionsPerAddress = -1
	}
	return nil
}
