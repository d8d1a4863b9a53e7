// Package operator assembles the manager: scheme, cache, indexes and reconcilers. The manager command, the
// tests and the demo all build the operator through it, so they run the same thing.
package operator

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/console"
	"github.com/linkmesh/linkmesh-operator/internal/controller/desired"
	"github.com/linkmesh/linkmesh-operator/internal/controller/enrollmenttoken"
	"github.com/linkmesh/linkmesh-operator/internal/controller/managedcollector"
	"github.com/linkmesh/linkmesh-operator/internal/credential"
	"github.com/linkmesh/linkmesh-operator/internal/downloads"
	"github.com/linkmesh/linkmesh-operator/internal/endpoint"
	"github.com/linkmesh/linkmesh-operator/internal/fleet"
	"github.com/linkmesh/linkmesh-operator/internal/index"
	"github.com/linkmesh/linkmesh-operator/internal/listener"
	"github.com/linkmesh/linkmesh-operator/internal/manifests"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
	"github.com/linkmesh/linkmesh-operator/internal/opampserver"
	"github.com/linkmesh/linkmesh-operator/internal/otlpintake"
	"github.com/linkmesh/linkmesh-operator/internal/replica"
	"github.com/linkmesh/linkmesh-operator/internal/statusmetrics"
)

// Options configure the operator.
type Options struct {
	// MetricsAddr is the Prometheus endpoint's address; "0" disables it.
	MetricsAddr string
	// ProbeAddr serves the manager's /healthz and /readyz; "0" disables it.
	ProbeAddr string
	// PprofAddr serves net/http/pprof for profiling (--pprof-bind-address); "" or "0" disables it. Profiles
	// show what the process holds, so it is off by default and meant for loopback.
	PprofAddr string
	// LeaderElect elects one replica to run the reconcilers.
	LeaderElect bool
	// LeaderElectionNamespace is needed when running outside a cluster with LeaderElect.
	LeaderElectionNamespace string
	// LeaderElection times the leader election Lease; zero values take LeaderElectionDefaults.
	LeaderElection LeaderElectionTiming
	// ExternalURL is the http(s) base URL at which collectors reach the operator. Empty means the listener's
	// own address, for a run on this machine.
	ExternalURL string
	// OpAMPBindAddress is the listener of /v1/opamp, /healthz and /readyz; default :4320.
	OpAMPBindAddress string
	// TLSCertFile and TLSKeyFile switch the listener to TLS (wss:// and https://); both or neither.
	TLSCertFile, TLSKeyFile string
	// ListenerLimits bound the connections and request bodies of the listener's clients; zero values take
	// the defaults.
	ListenerLimits listener.Limits
	// AgentImage is the default image of collector pods.
	AgentImage string
	// MirrorDir (--mirror-dir) is served under /api/v1/downloads/bin/ to installers on air-gapped hosts.
	MirrorDir string
	// ConsoleBindAddress is the read-only web console's address (--console-bind-address); empty or "0"
	// serves none. On anything but loopback it requires a Kubernetes bearer token.
	ConsoleBindAddress string
	// ConsoleRequireToken requires the bearer token on loopback too (tests, which may bind only 127.0.0.1).
	ConsoleRequireToken bool
	// Clock drives EnrollmentToken expiry; nil means the real clock.
	Clock clock.PassiveClock
	// SkipControllerNameValidation lets one process build the operator more than once (controller-runtime
	// refuses a second controller of the same name otherwise); for tests that run it under several identities.
	SkipControllerNameValidation bool
	// ReplicaID names this replica among several; empty makes one (replica.NewID).
	ReplicaID string
	// ReplicaNamespace holds the replicas' Leases: the operator's own namespace. Defaults to
	// LeaderElectionNamespace, then POD_NAMESPACE, then "default".
	ReplicaNamespace string
	// UnhealthyGrace is how long a collector may be unhealthy without an error before it is a Warning and
	// fails a progressive rollout's revision; zero is fleet.DefaultUnhealthyGrace. Tests shorten it.
	UnhealthyGrace time.Duration
	// DrainPeriod spreads the closing of this replica's collector connections on shutdown; default 5 s.
	DrainPeriod time.Duration
}

// DefaultExternalURL is the in-cluster Service of the operator in namespace ns.
func DefaultExternalURL(ns string) string {
	return "http://linkmesh-operator." + ns + ".svc:4320"
}

// NewScheme knows the built-in kinds and this operator's API.
func NewScheme() (*runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	return scheme, nil
}

// Operator is the manager with the reconcilers, the fleet, the OpAMP server and its listener added.
type Operator struct {
	ctrl.Manager
	listener    *listener.Server
	console     *console.Server
	externalURL string
}

// ExternalURL is the base URL rendered into supervisor.yaml.
func (op *Operator) ExternalURL() string { return op.externalURL }

// ListenerAddr is the bound address of the OpAMP listener.
func (op *Operator) ListenerAddr() net.Addr { return op.listener.Addr() }

// ConsoleAddr is the bound address of the console, nil when it is off.
func (op *Operator) ConsoleAddr() net.Addr {
	if op.console == nil {
		return nil
	}
	return op.console.Addr()
}

// New builds the operator and binds its listener, so a taken port fails here rather than after start-up.
// Start it with Start.
func New(cfg *rest.Config, o Options) (_ *Operator, retErr error) {
	lis := listener.New(listener.Options{
		BindAddress: o.OpAMPBindAddress, CertFile: o.TLSCertFile, KeyFile: o.TLSKeyFile, Limits: o.ListenerLimits,
	})
	if err := lis.Listen(); err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			_ = lis.Close()
		}
	}()
	if o.ExternalURL == "" {
		o.ExternalURL = localURL(lis.Addr(), o.TLSCertFile != "")
	}
	opampURL, err := endpoint.OpAMP(o.ExternalURL)
	if err != nil {
		return nil, err
	}
	if o.AgentImage == "" {
		o.AgentImage = manifests.DefaultSupervisorImage
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.ReplicaID == "" {
		o.ReplicaID = replica.NewID()
	}
	if o.ReplicaNamespace == "" {
		o.ReplicaNamespace = o.LeaderElectionNamespace
	}
	if o.ReplicaNamespace == "" {
		o.ReplicaNamespace = os.Getenv("POD_NAMESPACE")
	}
	if o.ReplicaNamespace == "" {
		o.ReplicaNamespace = "default"
	}
	if o.DrainPeriod <= 0 {
		o.DrainPeriod = 5 * time.Second
	}
	scheme, err := NewScheme()
	if err != nil {
		return nil, err
	}
	// Cache only the Secrets, ConfigMaps, DaemonSets and shares the operator owns, and the replicas' Leases:
	// a cluster's Secrets are many, and none of the others is any of its business.
	owned := cache.ByObject{Label: labels.SelectorFromSet(labels.Set{naming.LabelManagedBy: naming.FieldOwner})}
	replicaLeases := cache.ByObject{
		Namespaces: map[string]cache.Config{o.ReplicaNamespace: {}},
		Label:      labels.SelectorFromSet(labels.Set{naming.LabelManagedBy: naming.FieldOwner, naming.LabelComponent: replica.LabelComponentReplica}),
	}
	le := o.LeaderElection.withDefaults()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsserver.Options{BindAddress: o.MetricsAddr},
		HealthProbeBindAddress:  o.ProbeAddr,
		PprofBindAddress:        o.PprofAddr,
		LeaderElection:          o.LeaderElect,
		LeaderElectionID:        "linkmesh-operator." + v1alpha1.GroupName,
		LeaderElectionNamespace: o.LeaderElectionNamespace,
		LeaseDuration:           &le.LeaseDuration,
		RenewDeadline:           &le.RenewDeadline,
		RetryPeriod:             &le.RetryPeriod,
		// A stopping leader hands over at once instead of leaving the replicas without one (no status, no
		// accepted edit) for the Lease's 15 s; safe because the manager ends the process when it stops,
		// after every runnable that leads has returned.
		LeaderElectionReleaseOnCancel: true,
		Controller:                    config.Controller{SkipNameValidation: &o.SkipControllerNameValidation},
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: owned, &corev1.ConfigMap{}: owned, &appsv1.DaemonSet{}: owned,
			&v1alpha1.CollectorShare{}: owned, &coordinationv1.Lease{}: replicaLeases,
			// The console shows the Events about ManagedCollectors, and no others.
			&eventsv1.Event{}: {Field: fields.OneTermEqualSelector("regarding.kind", "ManagedCollector")},
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("creating the manager: %w", err)
	}
	if err := index.Setup(context.Background(), mgr.GetFieldIndexer()); err != nil {
		return nil, err
	}

	// The fleet, the OpAMP server and the replica's reporting run on every replica: collectors connect to
	// any of them.
	var rep *replica.Replica
	fl := fleet.New(fleet.Options{
		UnhealthyGrace:   o.UnhealthyGrace,
		RemoteOwnMetrics: func() bool { return rep.Others(context.Background()) },
	})
	if err := mgr.Add(fl); err != nil {
		return nil, err
	}
	recorder := mgr.GetEventRecorder("linkmesh-operator")
	rep = replica.New(replica.Options{
		ID: o.ReplicaID, Namespace: o.ReplicaNamespace, Client: mgr.GetClient(), Cache: mgr.GetCache(),
		Fleet: fl, Elected: mgr.Elected(), Drained: lis.Drained(),
	})
	if err := mgr.Add(rep); err != nil {
		return nil, err
	}
	lis.OnDrain(func(ctx context.Context) { fl.CloseAll(ctx, o.DrainPeriod) })
	ownMetrics, err := endpoint.OwnMetrics(o.ExternalURL)
	if err != nil {
		return nil, err
	}
	// One authority on tokens for the three servers on the listener.
	credentials := credential.NewAuthority(mgr.GetCache(), o.Clock)
	if err := credentials.Watch(context.Background(), mgr.GetCache()); err != nil {
		return nil, err
	}
	opamp, err := opampserver.New(opampserver.Options{
		Client: mgr.GetClient(), Credentials: credentials, APIReader: mgr.GetAPIReader(), Fleet: fl, Clock: o.Clock,
		OwnMetricsEndpoint: ownMetrics,
	})
	if err != nil {
		return nil, err
	}
	if err := opamp.Watch(context.Background(), mgr.GetCache()); err != nil {
		return nil, err
	}
	lis.Handle(opampserver.Path, opamp.Handler())
	intake, err := otlpintake.New(otlpintake.Options{Auth: credentials, Fleet: fl})
	if err != nil {
		return nil, err
	}
	lis.Handle(otlpintake.Path, intake)
	// The last operator built in a process owns the series; only tests build more than one.
	for _, c := range []prometheus.Collector{otlpintake.NewThroughputMetrics(fl), fleet.NewMetrics(fl), statusmetrics.New(mgr.GetCache())} {
		ctrlmetrics.Registry.Unregister(c)
		if err := ctrlmetrics.Registry.Register(c); err != nil {
			return nil, fmt.Errorf("registering the fleet metrics: %w", err)
		}
	}
	dl, err := downloads.New(downloads.Options{Tokens: credentials, MirrorDir: o.MirrorDir})
	if err != nil {
		return nil, err
	}
	lis.Handle(downloads.Prefix, dl)
	lis.AddConnContext(opamp.ConnContext())
	if err := mgr.Add(lis); err != nil {
		return nil, err
	}

	if err := (&desired.Reconciler{Reader: mgr.GetCache(), Fleet: fl}).SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the desired-config controller: %w", err)
	}
	if err := (&managedcollector.Reconciler{
		Client:                 mgr.GetClient(),
		APIReader:              mgr.GetAPIReader(),
		Recorder:               recorder,
		OpAMPEndpoint:          opampURL,
		DefaultSupervisorImage: o.AgentImage,
		Fleet:                  fl,
		Peers:                  rep,
		Triggers:               rep.Triggers(),
	}).SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the ManagedCollector controller: %w", err)
	}
	if err := (&enrollmenttoken.Reconciler{
		Client:         mgr.GetClient(),
		APIReader:      mgr.GetAPIReader(),
		Recorder:       recorder,
		Clock:          o.Clock,
		InstallCommand: downloads.InstallCommand(o.ExternalURL),
	}).SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the EnrollmentToken controller: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("opamp", lis.Ready); err != nil {
		return nil, err
	}
	op := &Operator{Manager: mgr, listener: lis, externalURL: o.ExternalURL}
	if o.ConsoleBindAddress != "" && o.ConsoleBindAddress != "0" {
		if op.console, err = console.New(mgr, console.Options{BindAddress: o.ConsoleBindAddress, RequireToken: o.ConsoleRequireToken, Clock: o.Clock}); err != nil {
			return nil, err
		}
		if err := mgr.Add(op.console); err != nil {
			_ = op.console.Close()
			return nil, err
		}
	}
	return op, nil
}

// localURL is the listener's address as a URL, with 127.0.0.1 for an unspecified host.
func localURL(addr net.Addr, tls bool) string {
	host, port, _ := net.SplitHostPort(addr.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	scheme := "http"
	if tls {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}
