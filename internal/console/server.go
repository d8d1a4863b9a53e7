// Package console is the operator's read-only web console: the Collectors page (every ManagedCollector), one
// ManagedCollector's page (agents, conditions, Events, EnrollmentTokens) and its Topology (spec.config's
// pipelines as an SVG graph with status.throughput's rates). It serves from the manager's informer cache on a
// listener of its own, never the collectors' one.
//
// On loopback (the default, reached with kubectl port-forward, which the API server authorizes) it shows
// everything. On any other address every request needs Authorization: Bearer <Kubernetes token>: a
// TokenReview says who it is, and SubjectAccessReviews decide what they see, namespace by namespace, as
// kubectl would (get managedcollectors; list enrollmenttokens and events for those sections). It never reads
// Secrets, so it can show no token.
package console

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
)

// Defaults of Options.
const (
	// DefaultBindAddress is loopback only: reach it with kubectl port-forward.
	DefaultBindAddress       = "127.0.0.1:8082"
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultShutdownTimeout   = 10 * time.Second
)

// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=list;watch

// Options configure the console.
type Options struct {
	// BindAddress is host:port (--console-bind-address).
	BindAddress string
	// RequireToken asks for a bearer token even on loopback. Any other address always requires one.
	RequireToken bool
	// Clock is the pages' now; nil is the real clock.
	Clock clock.PassiveClock
	// ReadHeaderTimeout, IdleTimeout and ShutdownTimeout of the HTTP server; zero takes the defaults.
	ReadHeaderTimeout, IdleTimeout, ShutdownTimeout time.Duration
}

// Server is the console, a manager.Runnable.
type Server struct {
	opts     Options
	handler  *handler
	listener net.Listener
	stopping chan struct{}
	stopOnce sync.Once
}

var _ manager.LeaderElectionRunnable = (*Server)(nil)

// New builds the console on mgr's cache, registers the Event index and the informers it reads (so they sync
// with the manager's cache, not on the first page view), and binds its address at once, so a taken port fails
// the operator at start-up. Add it to mgr; Close it if it will not be started.
func New(mgr manager.Manager, o Options) (*Server, error) {
	if o.BindAddress == "" {
		o.BindAddress = DefaultBindAddress
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.ReadHeaderTimeout <= 0 {
		o.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = DefaultShutdownTimeout
	}
	ctx := context.Background()
	if err := mgr.GetFieldIndexer().IndexField(ctx, &eventsv1.Event{}, EventRegardingName, func(obj client.Object) []string {
		e := obj.(*eventsv1.Event)
		if e.Regarding.Kind != collectorKind {
			return nil
		}
		return []string{e.Regarding.Name}
	}); err != nil {
		return nil, fmt.Errorf("indexing Events by the ManagedCollector they regard: %w", err)
	}
	b := newBroker()
	for _, w := range []struct {
		obj client.Object
		key func(client.Object) (string, string, bool)
	}{
		{&v1alpha1.ManagedCollector{}, collectorKey},
		{&v1alpha1.EnrollmentToken{}, tokenKey},
		{&eventsv1.Event{}, eventKey},
	} {
		inf, err := mgr.GetCache().GetInformer(ctx, w.obj)
		if err != nil {
			return nil, fmt.Errorf("watching %T for the console: %w", w.obj, err)
		}
		if _, err := inf.AddEventHandler(b.handlerFor(w.key)); err != nil {
			return nil, fmt.Errorf("watching %T for the console: %w", w.obj, err)
		}
	}
	ln, err := net.Listen("tcp", o.BindAddress)
	if err != nil {
		return nil, fmt.Errorf("console: listening on %s: %w", o.BindAddress, err)
	}
	requireToken := o.RequireToken || !isLoopback(ln.Addr())
	s := &Server{opts: o, listener: ln, stopping: make(chan struct{})}
	s.handler = &handler{
		reader:   mgr.GetCache(),
		access:   newAccess(requireToken, mgr.GetClient(), o.Clock),
		broker:   b,
		clock:    o.Clock,
		log:      mgr.GetLogger().WithName("console"),
		stopping: s.stopping,
	}
	return s, nil
}

// isLoopback says whether the listener accepts connections from this host only.
func isLoopback(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.listener.Addr() }

// RequiresToken says whether requests need a bearer token.
func (s *Server) RequiresToken() bool { return s.handler.access.requireToken }

// Close releases the address of a Server that will not be started.
func (s *Server) Close() error { return s.listener.Close() }

// NeedLeaderElection is false: every replica serves the console from its own cache, so a port-forward to any
// pod works. It writes nothing.
func (s *Server) NeedLeaderElection() bool { return false }

// Start serves until ctx is done, then ends the update streams and shuts down within ShutdownTimeout.
func (s *Server) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName("console")
	srv := &http.Server{
		Handler:           s.handler.routes(),
		ReadHeaderTimeout: s.opts.ReadHeaderTimeout,
		IdleTimeout:       s.opts.IdleTimeout,
		// No WriteTimeout: /updates streams; its writes carry their own deadlines.
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(s.listener) }()
	logger.Info("Serving the console", "address", s.Addr().String(), "requireToken", s.RequiresToken())
	select {
	case err := <-served:
		return fmt.Errorf("console: serving on %s: %w", s.opts.BindAddress, err)
	case <-ctx.Done():
	}
	// The update streams end first: Shutdown waits for every active request.
	s.stopOnce.Do(func() { close(s.stopping) })
	shutdownCtx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	if serveErr := <-served; !errors.Is(serveErr, http.ErrServerClosed) {
		logger.Error(serveErr, "Console serving ended unexpectedly during shutdown")
	}
	if err != nil {
		return fmt.Errorf("console: shutting down: %w", err)
	}
	return nil
}
