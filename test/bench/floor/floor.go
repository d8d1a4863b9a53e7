// Package floor is the fleet benchmark's floor: a bare opamp-go server with nothing behind it. It accepts
// every agent, keeps a map of connections, and pushes one config to each, at its first message and on
// every change. What the operator does beyond that (authentication, the fleet registry, status, the API
// server) is the difference between the two in the same run, on the same machine.
package floor

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/open-telemetry/opamp-go/protobufs"
	opamp "github.com/open-telemetry/opamp-go/server"
	opamptypes "github.com/open-telemetry/opamp-go/server/types"
)

// Path is where agents connect, as on the operator.
const Path = "/v1/opamp"

// capabilities are those of the operator's server.
const capabilities = uint64(protobufs.ServerCapabilities_ServerCapabilities_AcceptsStatus |
	protobufs.ServerCapabilities_ServerCapabilities_OffersRemoteConfig |
	protobufs.ServerCapabilities_ServerCapabilities_AcceptsEffectiveConfig)

// Server is a running floor server.
type Server struct {
	http *http.Server
	ln   net.Listener

	mu     sync.Mutex
	config *protobufs.AgentRemoteConfig
	// conns holds every connection that has sent a message, with its agent's instance UID.
	conns map[opamptypes.Connection][]byte
}

// Start listens on addr (host:port, port 0 for a free one) and serves config to every agent.
func Start(addr, config string) (*Server, error) {
	s := &Server{conns: map[opamptypes.Connection][]byte{}}
	s.config = remoteConfig(config)
	handler, connContext, err := opamp.New(nil).Attach(opamp.Settings{
		Callbacks: opamptypes.Callbacks{OnConnecting: func(*http.Request) opamptypes.ConnectionResponse {
			return opamptypes.ConnectionResponse{Accept: true, ConnectionCallbacks: opamptypes.ConnectionCallbacks{
				OnMessage:         s.onMessage,
				OnConnectionClose: s.onClose,
			}}
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("attaching the OpAMP server: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc(Path, handler)
	s.ln, err = net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", addr, err)
	}
	s.http = &http.Server{Handler: mux, ConnContext: connContext, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.http.Serve(s.ln) }()
	return s, nil
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

func remoteConfig(body string) *protobufs.AgentRemoteConfig {
	sum := sha256.Sum256([]byte(body))
	return &protobufs.AgentRemoteConfig{
		Config: &protobufs.AgentConfigMap{ConfigMap: map[string]*protobufs.AgentConfigFile{
			"collector.yaml": {Body: []byte(body), ContentType: "text/yaml"},
		}},
		ConfigHash: sum[:],
	}
}

func (s *Server) onMessage(_ context.Context, conn opamptypes.Connection, msg *protobufs.AgentToServer) *protobufs.ServerToAgent {
	s.mu.Lock()
	_, known := s.conns[conn]
	s.conns[conn] = msg.InstanceUid
	cfg := s.config
	s.mu.Unlock()
	resp := &protobufs.ServerToAgent{InstanceUid: msg.InstanceUid, Capabilities: capabilities}
	if !known && string(msg.GetRemoteConfigStatus().GetLastRemoteConfigHash()) != string(cfg.ConfigHash) {
		resp.RemoteConfig = cfg
	}
	return resp
}

func (s *Server) onClose(conn opamptypes.Connection) {
	s.mu.Lock()
	delete(s.conns, conn)
	s.mu.Unlock()
}

// Push makes config the one config and sends it to every connection; it returns how many it reached.
func (s *Server) Push(config string) int {
	cfg := remoteConfig(config)
	s.mu.Lock()
	s.config = cfg
	conns := make(map[opamptypes.Connection][]byte, len(s.conns))
	for c, uid := range s.conns {
		conns[c] = uid
	}
	s.mu.Unlock()
	sent := 0
	for c, uid := range conns {
		if c.Send(context.Background(), &protobufs.ServerToAgent{InstanceUid: uid, Capabilities: capabilities, RemoteConfig: cfg}) == nil {
			sent++
		}
	}
	return sent
}

// Connections is how many agents are connected.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Stop closes the listener and every connection: opamp-go does not close hijacked WebSockets itself.
func (s *Server) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.http.Shutdown(ctx)
	s.mu.Lock()
	for c := range s.conns {
		_ = c.Disconnect()
	}
	s.mu.Unlock()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Command is one line on the floor process's stdin.
type Command struct {
	// Push is a config to push to every agent.
	Push *string `json:"push,omitempty"`
}

// Event is one line on the floor process's stdout.
type Event struct {
	// Addr is the listening address, written once at start.
	Addr string `json:"addr,omitempty"`
	// Pushed answers a Push with how many connections it was sent to.
	Pushed *int `json:"pushed,omitempty"`
	// Error ends the process.
	Error string `json:"error,omitempty"`
}

// Serve runs a floor server on addr with config until in ends (its parent stops it or is gone).
func Serve(addr, config string, in io.Reader, out io.Writer) error {
	enc := json.NewEncoder(out)
	s, err := Start(addr, config)
	if err != nil {
		_ = enc.Encode(Event{Error: err.Error()})
		return err
	}
	defer func() { _ = s.Stop() }()
	_ = enc.Encode(Event{Addr: s.Addr()})
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var c Command
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			err = fmt.Errorf("command %q: %w", sc.Text(), err)
			_ = enc.Encode(Event{Error: err.Error()})
			return err
		}
		if c.Push != nil {
			n := s.Push(*c.Push)
			_ = enc.Encode(Event{Pushed: &n})
		}
	}
	return sc.Err()
}
