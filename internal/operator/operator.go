// Package operator assembles the manager: scheme, cache, indexes and reconcilers. The manager command, the
// tests and the demo all build the operator through it, so they run the same thing.
package operator

import (
	"context"
	"fmt"
	"net"

	"github.com/prometheus/client_golang/prometheus"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
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
)

// Options configure the operator.
type Options struct {
	// MetricsAddr is the Prometheus endpoint's address; "0" disables it.
	MetricsAddr string
	// ProbeAddr serves the manager's /healthz and /readyz; "0" disables it.
	ProbeAddr string
	// LeaderElect elects one replica to run the reconcilers.
	LeaderElect bool
	// LeaderElectionNamespace is needed when running outside a cluster with LeaderElect.
	LeaderElectionNamespace string
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
	// Clock drives EnrollmentToken expiry; nil means the real clock.
	Clock clock.PassiveClock
	// SkipControllerNameValidation lets one process build the operator more than once (controller-runtime
	// refuses a second controller of the same name otherwise); for tests that run it under several identities.
	SkipControllerNameValidation bool
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
	externalURL string
}

// ExternalURL is the base URL rendered into supervisor.yaml.
func (op *Operator) ExternalURL() string { return op.externalURL }

// ListenerAddr is the bound address of the OpAMP listener.
func (op *Operator) ListenerAddr() net.Addr { return op.listener.Addr() }

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
	scheme, err := NewScheme()
	if err != nil {
		return nil, err
	}
	// Cache only the Secrets, ConfigMaps and DaemonSets the operator owns: a cluster's Secrets are many, and
	// none of the others is any of its business.
	owned := cache.ByObject{Label: labels.SelectorFromSet(labels.Set{naming.LabelManagedBy: naming.FieldOwner})}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsserver.Options{BindAddress: o.MetricsAddr},
		HealthProbeBindAddress:  o.ProbeAddr,
		LeaderElection:          o.LeaderElect,
		LeaderElectionID:        "linkmesh-operator." + v1alpha1.GroupName,
		LeaderElectionNamespace: o.LeaderElectionNamespace,
		Controller:              config.Controller{SkipNameValidation: &o.SkipControllerNameValidation},
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: owned, &corev1.ConfigMap{}: owned, &appsv1.DaemonSet{}: owned,
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("creating the manager: %w", err)
	}
	if err := index.Setup(context.Background(), mgr.GetFieldIndexer()); err != nil {
		return nil, err
	}

	// The fleet and the OpAMP server run on every replica: collectors connect to any of them.
	fl := fleet.New(fleet.Options{})
	if err := mgr.Add(fl); err != nil {
		return nil, err
	}
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
	for _, c := range []prometheus.Collector{otlpintake.NewCollector(fl), fleet.NewMetrics(fl)} {
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

	recorder := mgr.GetEventRecorder("linkmesh-operator")
	if err := (&managedcollector.Reconciler{
		Client:                 mgr.GetClient(),
		APIReader:              mgr.GetAPIReader(),
		Recorder:               recorder,
		OpAMPEndpoint:          opampURL,
		DefaultSupervisorImage: o.AgentImage,
		Fleet:                  fl,
		FleetChanges:           fl.Changes(),
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
	return &Operator{Manager: mgr, listener: lis, externalURL: o.ExternalURL}, nil
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
