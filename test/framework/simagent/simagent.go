// Package simagent plays an upstream supervisor in tests and benchmarks: an opamp-go v0.23.0 client that
// reports a description and health, and answers every config it receives with a remote config status.
//
// Start ties an agent to a test; New runs one without a testing.TB, for the fleet benchmark's load
// generator, which runs thousands of them in a process of its own.
package simagent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	opampclient "github.com/open-telemetry/opamp-go/client"
	clienttypes "github.com/open-telemetry/opamp-go/client/types"
	"github.com/open-telemetry/opamp-go/protobufs"
)

// Capabilities are those the upstream supervisor reports with LinkMesh's supervisor.yaml.
const Capabilities = protobufs.AgentCapabilities_AgentCapabilities_ReportsStatus |
	protobufs.AgentCapabilities_AgentCapabilities_AcceptsRemoteConfig |
	protobufs.AgentCapabilities_AgentCapabilities_ReportsRemoteConfig |
	protobufs.AgentCapabilities_AgentCapabilities_ReportsHealth |
	protobufs.AgentCapabilities_AgentCapabilities_ReportsHeartbeat

// Str is a string KeyValue.
func Str(k, v string) *protobufs.KeyValue {
	return &protobufs.KeyValue{Key: k, Value: &protobufs.AnyValue{Value: &protobufs.AnyValue_StringValue{StringValue: v}}}
}

// Description is what a supervisor on host reports.
func Description(host string) *protobufs.AgentDescription {
	return &protobufs.AgentDescription{
		IdentifyingAttributes:    []*protobufs.KeyValue{Str("service.name", "otelcol-contrib"), Str("service.version", "0.153.0")},
		NonIdentifyingAttributes: []*protobufs.KeyValue{Str("host.name", host)},
	}
}

// ApplyFunc decides the status an agent reports for a config.
type ApplyFunc func(*protobufs.AgentRemoteConfig) (protobufs.RemoteConfigStatuses, string)

// Options of an agent.
type Options struct {
	// HTTP uses the plain-HTTP transport, polling every 50 ms; the default is WebSocket.
	HTTP bool
	// Host is reported as host.name.
	Host string
	// Attributes are further non-identifying attributes, such as k8s.pod.name and k8s.node.name.
	Attributes map[string]string
	// UID is the instance UID; a new UUIDv7 when zero.
	UID uuid.UUID
	// Apply answers each config; nil reports APPLIED.
	Apply ApplyFunc
	// Effective, when set, gives the effective config the agent reports after each config it receives
	// (the supervisor reports what its collector runs); the agent then has ReportsEffectiveConfig.
	Effective func(*protobufs.AgentRemoteConfig) string
	// OwnMetrics adds the ReportsOwnMetrics capability, as spec.supervisor.ownMetrics does.
	OwnMetrics bool
	// ReportApplying reports APPLYING when a config arrives, before Apply's outcome, as the supervisor
	// does while it restarts its collector.
	ReportApplying bool
	// ApplyDelay is how long the simulated collector takes to restart between APPLYING and the outcome.
	// With zero, opamp-go's sender may put both reports into one message, as it would for a supervisor
	// whose collector restarts within one send.
	ApplyDelay time.Duration
	// Heartbeat is the WebSocket heartbeat interval; zero keeps opamp-go's 30 s.
	Heartbeat time.Duration
	// Fallback are further server addresses (host:port). When a connection attempt fails the agent moves
	// on to the next address, round robin, as a Service sends a reconnecting agent to a live replica.
	Fallback []string
	// OnConnect is called each time a connection is established.
	OnConnect func()
	// OnConnectFailed is called each time a connection attempt fails, once per attempt.
	OnConnectFailed func(error)
	// OnConfig is called after the agent reported the outcome of a config it received.
	OnConfig func(cfg *protobufs.AgentRemoteConfig, status protobufs.RemoteConfigStatuses)
	// OnServerMessage is called for every message the server sends, answers to heartbeats and pings
	// included, before the message is acted on: a benchmark times round trips with it.
	OnServerMessage func()
	// OnServerError is called for every ServerErrorResponse, as a refused agent gets before the server
	// closes its connection.
	OnServerError func(*protobufs.ServerErrorResponse)
	// ReadOnly leaves out AcceptsRemoteConfig and ReportsRemoteConfig, as a plain collector with only the
	// opamp extension does: it reports its health and effective config, and runs its own.
	ReadOnly bool
}

// Agent is a running simulated supervisor.
type Agent struct {
	UID uuid.UUID

	opts    Options
	token   string
	addrs   []string
	stopped atomic.Bool
	// failedAt is when opamp-go last reported a failed connection attempt (Unix nanoseconds).
	failedAt atomic.Int64
	// switching is set while a failover to the next address is under way.
	switching atomic.Bool

	mu        sync.Mutex
	client    opampclient.OpAMPClient
	addr      int
	backoff   time.Duration
	status    *protobufs.RemoteConfigStatus
	health    *protobufs.ComponentHealth
	configs   []*protobufs.AgentRemoteConfig
	errs      []*protobufs.ServerErrorResponse
	commands  []*protobufs.ServerToAgentCommand
	current   string
	offers    []*protobufs.TelemetryConnectionSettings
	stopWaits sync.WaitGroup
}

// maxErrors bounds the ServerErrorResponses an agent keeps: a refused opamp-go client reconnects at once
// and is refused again, many times a second.
const maxErrors = 100

// Bounds of the pause between failovers, so agents whose every server is down do not spin.
const (
	failoverMinBackoff = 100 * time.Millisecond
	failoverMaxBackoff = 5 * time.Second
)

// Start connects an agent to the OpAMP server at addr (host:port) with the bearer token. It is stopped
// when the test ends.
func Start(t testing.TB, addr, token string, o Options) *Agent {
	t.Helper()
	a, err := New(addr, token, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Stop)
	return a
}

// New connects an agent to the OpAMP server at addr (host:port) with the bearer token. opamp-go retries
// the connection in the background, so New does not wait for it. Stop it with Stop.
func New(addr, token string, o Options) (*Agent, error) {
	if o.UID == uuid.Nil {
		o.UID = uuid.Must(uuid.NewV7())
	}
	a := &Agent{
		UID: o.UID, opts: o, token: token, addrs: append([]string{addr}, o.Fallback...),
		health: &protobufs.ComponentHealth{Healthy: true}, backoff: failoverMinBackoff,
	}
	if err := a.connect(); err != nil {
		return nil, err
	}
	return a, nil
}

// connect starts an opamp-go client on the current address with the agent's state, as a supervisor
// restarts with what it persisted: its last remote config status and effective config. It holds no lock
// while the client starts: the plain-HTTP client asks for the effective config inside Start.
func (a *Agent) connect() error {
	a.mu.Lock()
	addr, status, health := a.addrs[a.addr], a.status, a.health
	a.mu.Unlock()
	var cl opampclient.OpAMPClient
	settings := clienttypes.StartSettings{
		Header:             http.Header{"Authorization": []string{"Bearer " + a.token}},
		InstanceUid:        clienttypes.InstanceUid(a.UID),
		RemoteConfigStatus: status,
	}
	if a.opts.HTTP {
		cl = opampclient.NewHTTP(nil)
		settings.OpAMPServerURL = "http://" + addr + "/v1/opamp"
		poll := 50 * time.Millisecond
		settings.HeartbeatInterval = &poll
	} else {
		cl = opampclient.NewWebSocket(nil)
		settings.OpAMPServerURL = "ws://" + addr + "/v1/opamp"
		if a.opts.Heartbeat > 0 {
			settings.HeartbeatInterval = &a.opts.Heartbeat
		}
	}
	settings.Callbacks = clienttypes.Callbacks{
		OnConnect: func(context.Context) {
			a.mu.Lock()
			a.backoff = failoverMinBackoff
			a.mu.Unlock()
			if a.opts.OnConnect != nil {
				a.opts.OnConnect()
			}
		},
		OnConnectFailed: func(_ context.Context, err error) {
			// opamp-go v0.23 reports a failed dial twice (wsclient.tryConnectOnce calls the callback, and so
			// does its deferred function); its retries are at least 250 ms apart, so a second call within
			// 100 ms is the same attempt.
			now := time.Now().UnixNano()
			if a.opts.OnConnectFailed != nil && now-a.failedAt.Swap(now) >= int64(100*time.Millisecond) {
				a.opts.OnConnectFailed(err)
			}
			if len(a.addrs) > 1 && !a.stopped.Load() && a.switching.CompareAndSwap(false, true) {
				go a.failover(cl)
			}
		},
		OnMessage: func(ctx context.Context, msg *clienttypes.MessageData) { a.onMessage(ctx, cl, msg) },
		OnError: func(_ context.Context, err *protobufs.ServerErrorResponse) {
			a.mu.Lock()
			if len(a.errs) < maxErrors {
				a.errs = append(a.errs, err)
			}
			a.mu.Unlock()
			if a.opts.OnServerError != nil {
				a.opts.OnServerError(err)
			}
		},
		OnCommand: func(_ context.Context, cmd *protobufs.ServerToAgentCommand) error {
			a.mu.Lock()
			a.commands = append(a.commands, cmd)
			a.mu.Unlock()
			return nil
		},
	}
	if a.opts.Effective != nil {
		// Only then: opamp-go sends whatever this returns in the first message, capability or not.
		settings.Callbacks.GetEffectiveConfig = func(context.Context) (*protobufs.EffectiveConfig, error) {
			a.mu.Lock()
			defer a.mu.Unlock()
			return &protobufs.EffectiveConfig{ConfigMap: &protobufs.AgentConfigMap{ConfigMap: map[string]*protobufs.AgentConfigFile{
				"": {Body: []byte(a.current)},
			}}}, nil
		}
	}
	caps := Capabilities
	if a.opts.ReadOnly {
		caps &^= protobufs.AgentCapabilities_AgentCapabilities_AcceptsRemoteConfig |
			protobufs.AgentCapabilities_AgentCapabilities_ReportsRemoteConfig
	}
	if a.opts.OwnMetrics {
		caps |= protobufs.AgentCapabilities_AgentCapabilities_ReportsOwnMetrics
	}
	if a.opts.Effective != nil {
		caps |= protobufs.AgentCapabilities_AgentCapabilities_ReportsEffectiveConfig |
			protobufs.AgentCapabilities_AgentCapabilities_AcceptsRestartCommand
	}
	if err := cl.SetAgentDescription(a.description()); err != nil {
		return err
	}
	// Health first: SetCapabilities refuses ReportsHealth without it.
	if err := cl.SetHealth(health); err != nil {
		return err
	}
	if err := cl.SetCapabilities(&caps); err != nil {
		return err
	}
	if err := cl.Start(context.Background(), settings); err != nil {
		return fmt.Errorf("starting the OpAMP client for %s: %w", addr, err)
	}
	a.mu.Lock()
	stopped := a.stopped.Load()
	if !stopped {
		a.client = cl
	}
	a.mu.Unlock()
	if stopped {
		// Stop ran while this client started, and could not see it.
		stopClient(cl)
	}
	return nil
}

func (a *Agent) description() *protobufs.AgentDescription {
	d := Description(a.opts.Host)
	for _, k := range slices.Sorted(maps.Keys(a.opts.Attributes)) {
		d.NonIdentifyingAttributes = append(d.NonIdentifyingAttributes, Str(k, a.opts.Attributes[k]))
	}
	return d
}

// failover stops the client whose connection failed and, after a pause that grows while every address
// fails, starts one on the next address.
func (a *Agent) failover(failed opampclient.OpAMPClient) {
	defer a.switching.Store(false)
	a.mu.Lock()
	if a.stopped.Load() || a.client != failed {
		// Stop took the client first: stopping it twice would block.
		a.mu.Unlock()
		return
	}
	a.client = nil
	wait := a.backoff
	a.backoff = min(2*a.backoff, failoverMaxBackoff)
	a.mu.Unlock()
	stopClient(failed)
	time.Sleep(wait)
	a.mu.Lock()
	a.addr = (a.addr + 1) % len(a.addrs)
	a.mu.Unlock()
	if a.stopped.Load() {
		return
	}
	if err := a.connect(); err != nil && a.opts.OnConnectFailed != nil {
		a.opts.OnConnectFailed(err)
	}
}

func stopClient(cl opampclient.OpAMPClient) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = cl.Stop(ctx)
}

// Stop disconnects the agent; it is idempotent, as a second opamp-go Stop blocks forever.
func (a *Agent) Stop() {
	if !a.stopped.CompareAndSwap(false, true) {
		a.stopWaits.Wait()
		return
	}
	a.stopWaits.Add(1)
	defer a.stopWaits.Done()
	a.mu.Lock()
	cl := a.client
	a.client = nil
	a.mu.Unlock()
	if cl != nil {
		stopClient(cl)
	}
}

// Addr is the server address the agent uses now.
func (a *Agent) Addr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.addrs[a.addr]
}

// SetHealth reports the collector healthy or not.
func (a *Agent) SetHealth(healthy bool, lastError string) error {
	a.mu.Lock()
	a.health = &protobufs.ComponentHealth{Healthy: healthy, LastError: lastError}
	cl, h := a.client, a.health
	a.mu.Unlock()
	if cl == nil {
		return errors.New("the agent is stopped or between servers")
	}
	return cl.SetHealth(h)
}

// Ping sends the agent's health again, unchanged: a status message the server answers and otherwise
// ignores, as it does a heartbeat, but sent now, so that the round trip can be timed.
func (a *Agent) Ping() error {
	a.mu.Lock()
	cl, h := a.client, a.health
	a.mu.Unlock()
	if cl == nil {
		return errors.New("the agent is stopped or between servers")
	}
	return cl.SetHealth(h)
}

func (a *Agent) onMessage(_ context.Context, cl opampclient.OpAMPClient, msg *clienttypes.MessageData) {
	if a.opts.OnServerMessage != nil {
		a.opts.OnServerMessage()
	}
	if msg.OwnMetricsConnSettings != nil {
		a.mu.Lock()
		a.offers = append(a.offers, msg.OwnMetricsConnSettings)
		a.mu.Unlock()
	}
	if msg.RemoteConfig == nil {
		return
	}
	a.mu.Lock()
	a.configs = append(a.configs, msg.RemoteConfig)
	a.mu.Unlock()
	if a.opts.ReportApplying {
		a.report(cl, &protobufs.RemoteConfigStatus{
			LastRemoteConfigHash: msg.RemoteConfig.ConfigHash,
			Status:               protobufs.RemoteConfigStatuses_RemoteConfigStatuses_APPLYING,
		})
	}
	if a.opts.ApplyDelay > 0 {
		// The supervisor answers later, from another goroutine; opamp-go allows that.
		time.AfterFunc(a.opts.ApplyDelay, func() { a.finishApply(cl, msg.RemoteConfig) })
		return
	}
	a.finishApply(cl, msg.RemoteConfig)
}

// finishApply reports the outcome of a config: the effective config, then the status.
func (a *Agent) finishApply(cl opampclient.OpAMPClient, rc *protobufs.AgentRemoteConfig) {
	status, text := protobufs.RemoteConfigStatuses_RemoteConfigStatuses_APPLIED, ""
	if a.opts.Apply != nil {
		status, text = a.opts.Apply(rc)
	}
	if a.opts.Effective != nil {
		a.mu.Lock()
		a.current = a.opts.Effective(rc)
		a.mu.Unlock()
		_ = cl.UpdateEffectiveConfig(context.Background())
	}
	a.report(cl, &protobufs.RemoteConfigStatus{LastRemoteConfigHash: rc.ConfigHash, Status: status, ErrorMessage: text})
	if a.opts.OnConfig != nil {
		a.opts.OnConfig(rc, status)
	}
}

// report sends a remote config status and keeps it, so a client started after a failover reports it.
func (a *Agent) report(cl opampclient.OpAMPClient, s *protobufs.RemoteConfigStatus) {
	a.mu.Lock()
	a.status = s
	a.mu.Unlock()
	_ = cl.SetRemoteConfigStatus(s)
}

// Received is every config the agent got, in order.
func (a *Agent) Received() []*protobufs.AgentRemoteConfig {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*protobufs.AgentRemoteConfig(nil), a.configs...)
}

// Commands is every command the agent got.
func (a *Agent) Commands() []*protobufs.ServerToAgentCommand {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*protobufs.ServerToAgentCommand(nil), a.commands...)
}

// Errors is every ServerErrorResponse the agent got, the first 100 of them.
func (a *Agent) Errors() []*protobufs.ServerErrorResponse {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*protobufs.ServerErrorResponse(nil), a.errs...)
}

// OwnMetricsOffers is every own_metrics destination the agent was offered.
func (a *Agent) OwnMetricsOffers() []*protobufs.TelemetryConnectionSettings {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*protobufs.TelemetryConnectionSettings(nil), a.offers...)
}
