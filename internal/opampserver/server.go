// Package opampserver is the operator's embedded OpAMP server at /v1/opamp, built on opamp-go's server
// package in Attach mode. It authenticates supervisors with a ManagedCollector's collector credential or
// an EnrollmentToken, records what they report in the fleet registry, and pushes each group's config.
//
// Its callbacks never write ManagedCollector status: they update the registry, which signals the
// reconciler. Credentials are checked by the credential.Authority, from the informer cache. The one API
// write is the EnrollmentToken redeem at a host's first message.
package opampserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	opamp "github.com/open-telemetry/opamp-go/server"
	opamptypes "github.com/open-telemetry/opamp-go/server/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/linkmesh/linkmesh-operator/internal/bounded"
	"github.com/linkmesh/linkmesh-operator/internal/credential"
	"github.com/linkmesh/linkmesh-operator/internal/endpoint"
	"github.com/linkmesh/linkmesh-operator/internal/fleet"
)

// Path is where the server is mounted on the listener.
const Path = endpoint.OpAMPPath

// DefaultMaxMessageSize is far below opamp-go's 64 MiB: a config is at most 256 KiB (the CRD's bound) and
// an agent's full state, effective config included, fits comfortably in 1 MiB.
const DefaultMaxMessageSize = 1 << 20

// contentTypeProtobuf marks opamp-go's plain-HTTP transport; anything else is a WebSocket upgrade.
const contentTypeProtobuf = "application/x-protobuf"

// Options configure a Server.
type Options struct {
	// Client writes the EnrollmentToken status at a redeem.
	Client client.Client
	// Credentials tells who presents a token.
	Credentials *credential.Authority
	// APIReader reads around the cache after a redeem conflict.
	APIReader client.Reader
	// Fleet receives what agents report and holds the desired configs.
	Fleet *fleet.Registry
	// MaxMessageSize bounds an agent's message; larger ones are refused and the connection closed.
	MaxMessageSize int64
	// IdleTimeout closes a WebSocket that has been silent this long; defaults to fleet.DefaultIdleTimeout.
	IdleTimeout time.Duration
	// RedeemTimeout bounds the API call of a redeem.
	RedeemTimeout time.Duration
	// Clock decides token expiry; tests inject one.
	Clock clock.PassiveClock
	// Logger defaults to the controller-runtime logger named "opamp".
	Logger logr.Logger
	// OwnMetricsEndpoint is the /v1/metrics URL offered to collectors as their own_metrics destination;
	// empty offers nothing.
	OwnMetricsEndpoint string
}

// Server is the OpAMP endpoint. Mount Handler at Path and add ConnContext to the listener.
type Server struct {
	client        client.Client
	credentials   *credential.Authority
	apiReader     client.Reader
	fleet         *fleet.Registry
	maxSize       int64
	idle          time.Duration
	redeemTimeout time.Duration
	clock         clock.PassiveClock
	log           logr.Logger
	// ownMetricsURL is Options.OwnMetricsEndpoint.
	ownMetricsURL string

	opampHandler opamp.HTTPHandlerFunc
	connContext  opamp.ConnContext

	// fullGroups remember the credentials refused for a full ManagedCollector, by address.
	fullGroups fullGroupRefusals

	// remoteConfigs are the RemoteConfigs built per revision hash, remoteConfigCount how many.
	remoteConfigs     sync.Map
	remoteConfigCount atomic.Int32
}

// New attaches an opamp-go server. It serves nothing until Handler is mounted.
func New(opts Options) (*Server, error) {
	if opts.Client == nil || opts.Credentials == nil || opts.APIReader == nil || opts.Fleet == nil {
		return nil, errors.New("opampserver: Client, Credentials, APIReader and Fleet are required")
	}
	if opts.MaxMessageSize <= 0 {
		opts.MaxMessageSize = DefaultMaxMessageSize
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = fleet.DefaultIdleTimeout
	}
	if opts.RedeemTimeout <= 0 {
		opts.RedeemTimeout = 10 * time.Second
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Logger.GetSink() == nil {
		opts.Logger = ctrl.Log.WithName("opamp")
	}
	s := &Server{
		client:        opts.Client,
		credentials:   opts.Credentials,
		apiReader:     opts.APIReader,
		fleet:         opts.Fleet,
		maxSize:       opts.MaxMessageSize,
		idle:          opts.IdleTimeout,
		redeemTimeout: opts.RedeemTimeout,
		clock:         opts.Clock,
		log:           opts.Logger,

		ownMetricsURL: opts.OwnMetricsEndpoint,
	}
	handler, connContext, err := opamp.New(&opampLogger{log: opts.Logger.WithName("opamp-go")}).Attach(opamp.Settings{
		Callbacks: opamptypes.Callbacks{OnConnecting: s.onConnecting},
	})
	if err != nil {
		return nil, fmt.Errorf("attaching the OpAMP server: %w", err)
	}
	s.opampHandler = handler
	s.connContext = connContext
	return s, nil
}

// ConnContext must be added to the listener's http.Server: opamp-go's plain-HTTP transport reads the
// connection from the request context.
func (s *Server) ConnContext() func(context.Context, net.Conn) context.Context {
	return s.connContext
}

type principalKey struct{}

// Handler authenticates, bounds plain-HTTP bodies and hands over to opamp-go.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.credentials.Authenticate(r.Context(), r, credential.UseOpAMP)
		if err != nil {
			// Refused before the body is read: net/http must not drain it at the client's pace first.
			bounded.SkipBody(w, r)
			credential.Refuse(w, s.log, err, "an OpAMP connection")
			return
		}
		if s.fullGroups.recent(fullGroupKey(p, r.RemoteAddr), s.clock.Now()) && s.fleet.Full(p.Collector) {
			bounded.SkipBody(w, r)
			refuseFull(w, p)
			return
		}
		if r.Header.Get("Content-Type") == contentTypeProtobuf {
			// opamp-go reads plain-HTTP bodies without a limit.
			body, status := bounded.ReadBody(w, r, s.maxSize)
			if status != 0 {
				w.WriteHeader(status)
				return
			}
			r.Header.Del("Content-Encoding")
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
		}
		s.opampHandler(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

// onConnecting runs after Handler authenticated the request, so it only builds the connection's session.
func (s *Server) onConnecting(r *http.Request) opamptypes.ConnectionResponse {
	p, ok := r.Context().Value(principalKey{}).(*credential.Principal)
	if !ok {
		return opamptypes.ConnectionResponse{Accept: false, HTTPStatusCode: http.StatusUnauthorized}
	}
	sess := &session{
		server:    s,
		principal: p,
		fullKey:   fullGroupKey(p, r.RemoteAddr),
		http:      r.Header.Get("Content-Type") == contentTypeProtobuf,
		kick:      make(chan struct{}, 1),
		done:      make(chan struct{}),
	}
	return opamptypes.ConnectionResponse{Accept: true, ConnectionCallbacks: sess.callbacks()}
}

// opampLogger sends opamp-go's logs to logr. Its errors include every dropped WebSocket, which is routine
// with a thousand agents, so both levels go to V(1).
type opampLogger struct{ log logr.Logger }

func (l *opampLogger) Debugf(_ context.Context, format string, v ...any) {
	l.log.V(2).Info(fmt.Sprintf(format, v...))
}

func (l *opampLogger) Errorf(_ context.Context, format string, v ...any) {
	l.log.V(1).Info(fmt.Sprintf(format, v...))
}
