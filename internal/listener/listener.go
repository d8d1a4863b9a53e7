// Package listener is the operator's one HTTP(S) listener: the OpAMP endpoint, the OTLP intake and the
// downloads are mounted on its mux. It runs as a controller-runtime manager.Runnable.
//
// The listener faces hosts outside the cluster, so it bounds what any client can hold before a handler
// authenticates it: connections per listener and per remote address (answered 503 with Retry-After over
// the caps), the time a request body may take and the rate it must keep. The handlers refuse a bad
// credential before they read a body (bounded.SkipBody).
package listener

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/linkmesh/linkmesh-operator/internal/bounded"

	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// Defaults of Options.
const (
	DefaultBindAddress       = ":4320"
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultWriteTimeout      = 10 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultShutdownTimeout   = 10 * time.Second
)

// Options configure a Server; zero values take the defaults.
type Options struct {
	// BindAddress is host:port to listen on (--opamp-bind-address).
	BindAddress string
	// CertFile and KeyFile (--tls-cert-file, --tls-key-file) switch the listener to TLS, so agents use
	// wss:// and https://. Both or neither. The files are watched and reloaded on change.
	CertFile, KeyFile string
	// ReadHeaderTimeout bounds how long a client may take to send its request headers.
	ReadHeaderTimeout time.Duration
	// WriteTimeout bounds every single write on every connection, also hijacked WebSockets: a peer that
	// stops reading cannot block a writer for longer. It is per write, not per response, so large
	// downloads are not cut off.
	WriteTimeout time.Duration
	// IdleTimeout closes idle keep-alive connections of plain HTTP clients.
	IdleTimeout time.Duration
	// ShutdownTimeout bounds the graceful shutdown after the manager's context is done.
	ShutdownTimeout time.Duration
	// Limits bound the connections and request bodies of clients.
	Limits Limits
}

// Server is the listener. Mount handlers with Handle before Start.
type Server struct {
	opts         Options
	limits       Limits
	mux          *http.ServeMux
	connContexts []func(context.Context, net.Conn) context.Context

	mu       sync.Mutex
	listener net.Listener
	tls      *certwatcher.CertWatcher
	conns    map[*trackedConn]struct{}
	// admitted counts the open connections within the caps; refusing those over a cap waiting for their
	// 503; busy, per address, the admitted connections that are opening or carrying a request.
	admitted, refusing int
	busy               map[string]int

	// refusals and dropped count the 503s and the connections closed unanswered since the last log line.
	refusals, dropped atomic.Int64
	lastRefusalLog    atomic.Int64
	log               atomic.Value

	// drain runs first on shutdown; see OnDrain.
	drain    func(context.Context)
	serving  atomic.Bool
	draining atomic.Bool
	stopping atomic.Bool
	drained  chan struct{}
}

// New returns a Server with /healthz and /readyz mounted.
func New(opts Options) *Server {
	if opts.BindAddress == "" {
		opts.BindAddress = DefaultBindAddress
	}
	if opts.ReadHeaderTimeout <= 0 {
		opts.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = DefaultShutdownTimeout
	}
	s := &Server{
		opts: opts, limits: opts.Limits.withDefaults(), mux: http.NewServeMux(),
		conns: map[*trackedConn]struct{}{}, busy: map[string]int{}, drained: make(chan struct{}),
	}
	s.mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("ok"))
	})
	s.mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.serving.Load() || s.draining.Load() || s.stopping.Load() {
			http.Error(w, "not serving", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("ok"))
	})
	return s
}

// Handle mounts h on pattern, as http.ServeMux does.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// OnDrain sets what runs first on shutdown, while every new request (probes aside) is answered 503 with
// Retry-After: the fleet closes its collectors' connections there, spread out, so they reconnect to the
// other replicas rather than all at once. Call it before Start.
func (s *Server) OnDrain(f func(context.Context)) { s.drain = f }

// Drained is closed once the shutdown's drain returned.
func (s *Server) Drained() <-chan struct{} { return s.drained }

// Limits are the caps in force, defaults resolved.
func (s *Server) Limits() Limits { return s.limits }

// ServeHTTP answers 503 on a connection over a cap, puts the body deadline on the request, and hands it to
// the mux.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() && r.URL.Path != "/healthz" && r.URL.Path != "/readyz" {
		// A collector that reconnects while this replica shuts down goes to another one.
		bounded.SkipBody(w, r)
		w.Header().Set("Retry-After", "5")
		w.Header().Set("Connection", "close")
		http.Error(w, "this operator replica is shutting down; retry", http.StatusServiceUnavailable)
		return
	}
	if tc := connOf(r.Context()); tc != nil {
		if why := s.refusedReason(tc); why != "" {
			s.refuse(w, r, why)
			return
		}
	}
	s.mux.ServeHTTP(w, s.bound(w, r))
}

// AddConnContext adds a function that derives each connection's base context, as http.Server.ConnContext.
// opamp-go's Attach returns one that its plain-HTTP transport depends on.
func (s *Server) AddConnContext(f func(context.Context, net.Conn) context.Context) {
	s.connContexts = append(s.connContexts, f)
}

// NeedLeaderElection is false: agents connect to every replica behind one Service, so every replica must
// serve, not only the leader. Nothing served here writes to the API server on its own behalf except the
// token redeem, which is safe from any replica because it is an optimistic-concurrency update.
func (s *Server) NeedLeaderElection() bool { return false }

// Listen binds the address and loads the TLS key pair. cmd/manager calls it before starting the manager,
// so a taken port or a bad certificate fails the process at once; Start calls it if nobody did.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listener != nil {
		return nil
	}
	if (s.opts.CertFile == "") != (s.opts.KeyFile == "") {
		return errors.New("--tls-cert-file and --tls-key-file must be set together")
	}
	var cw *certwatcher.CertWatcher
	if s.opts.CertFile != "" {
		var err error
		if cw, err = certwatcher.New(s.opts.CertFile, s.opts.KeyFile); err != nil {
			return fmt.Errorf("loading the TLS key pair: %w", err)
		}
	}
	ln, err := net.Listen("tcp", s.opts.BindAddress)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", s.opts.BindAddress, err)
	}
	s.listener = &trackingListener{Listener: ln, server: s}
	if cw != nil {
		s.tls = cw
		s.listener = tls.NewListener(s.listener, &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: cw.GetCertificate,
			// WebSocket upgrades need HTTP/1.1; an h2 connection would fail them with "bad handshake".
			NextProtos: []string{"http/1.1"},
		})
	}
	return nil
}

// Close releases the bound address of a Server that will not be started.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listener == nil {
		return nil
	}
	err := s.listener.Close()
	s.listener = nil
	return err
}

// Addr is the bound address, nil before Listen. Tests listen on 127.0.0.1:0 and read the port here.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listener == nil {
		return nil
	}
	return s.listener.Addr()
}

// Start serves until ctx is done, then shuts down gracefully within ShutdownTimeout and closes the
// connections http.Server does not: hijacked WebSockets.
func (s *Server) Start(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	logger := log.FromContext(ctx).WithName("listener")
	s.log.Store(logger)
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.opts.ReadHeaderTimeout,
		IdleTimeout:       s.opts.IdleTimeout,
		// An empty, non-nil map disables HTTP/2, which cannot carry WebSocket upgrades here.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ConnState:    s.connState,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			ctx = context.WithValue(ctx, connKey{}, tracked(c))
			for _, f := range s.connContexts {
				ctx = f(ctx, c)
			}
			return ctx
		},
	}
	if s.tls != nil {
		go func() {
			if err := s.tls.Start(ctx); err != nil {
				logger.Error(err, "TLS certificate watcher stopped")
			}
		}()
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(s.listener) }()
	s.serving.Store(true)
	logger.Info("Serving", "address", s.Addr().String(), "tls", s.tls != nil,
		"maxConnections", s.limits.MaxConnections, "maxConnectionsPerAddress", s.limits.MaxConnectionsPerAddress,
		"bodyReadTimeout", s.limits.BodyReadTimeout.String(), "minBodyRate", s.limits.MinBodyRate)

	select {
	case err := <-served:
		s.serving.Store(false)
		s.closeConns()
		close(s.drained)
		return fmt.Errorf("serving on %s: %w", s.opts.BindAddress, err)
	case <-ctx.Done():
	}
	if s.drain != nil {
		s.draining.Store(true)
		logger.Info("Draining: new requests get 503, connections are closed")
		drainCtx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
		s.drain(drainCtx)
		cancel()
	}
	close(s.drained)
	s.stopping.Store(true)
	logger.Info("Shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	// Shutdown neither closes nor waits for hijacked connections.
	s.closeConns()
	if serveErr := <-served; !errors.Is(serveErr, http.ErrServerClosed) {
		logger.Error(serveErr, "Serving ended unexpectedly during shutdown")
	}
	s.serving.Store(false)
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutting down: %w", err)
	}
	return nil
}

// Ready reports whether the server accepts requests; usable as a manager readiness check.
func (s *Server) Ready(_ *http.Request) error {
	if !s.serving.Load() || s.draining.Load() || s.stopping.Load() {
		return errors.New("listener is not serving")
	}
	return nil
}

// OpenConns is the number of connections the server holds, hijacked ones included.
func (s *Server) OpenConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *Server) closeConns() {
	s.mu.Lock()
	conns := make([]*trackedConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

type trackingListener struct {
	net.Listener
	server *Server
}

func (l *trackingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc := &trackedConn{Conn: c, server: l.server, writeTimeout: l.server.opts.WriteTimeout, addr: addressKey(c.RemoteAddr())}
		switch err := l.server.admit(tc); {
		case errors.Is(err, errDrop):
			// Over a cap with no room left to answer: close at once and take the next.
			_ = c.Close()
		case err != nil:
			_ = c.Close()
			return nil, err
		default:
			return tc, nil
		}
	}
}

// trackedConn is registered with its Server until closed, and puts a deadline on every write that its
// user did not give one: gorilla/websocket clears the deadline before each write of a hijacked connection.
type trackedConn struct {
	net.Conn
	server       *Server
	writeTimeout time.Duration
	explicit     atomic.Bool
	closeOnce    sync.Once
	// addr is the remote address as the per-address cap counts it.
	addr string

	// Guarded by server.mu: counted is within the caps (not refused at accept), busy in its address' busy
	// count, refused says which cap its requests are answered 503 for.
	counted, busy bool
	refused       string
}

func (c *trackedConn) Write(p []byte) (int, error) {
	if !c.explicit.Load() {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(c.writeTimeout))
	}
	return c.Conn.Write(p)
}

func (c *trackedConn) SetWriteDeadline(t time.Time) error {
	c.explicit.Store(!t.IsZero())
	return c.Conn.SetWriteDeadline(t)
}

func (c *trackedConn) SetDeadline(t time.Time) error {
	c.explicit.Store(!t.IsZero())
	return c.Conn.SetDeadline(t)
}

func (c *trackedConn) Close() error {
	c.closeOnce.Do(func() { c.server.release(c) })
	return c.Conn.Close()
}
