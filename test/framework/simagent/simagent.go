// Package simagent plays an upstream supervisor in tests: an opamp-go v0.23.0 client that reports a
// description and health, and answers every config it receives with a remote config status.
package simagent

import (
	"context"
	"net/http"
	"sync"
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
	// UID is the instance UID; a new UUIDv7 when zero.
	UID uuid.UUID
	// Apply answers each config; nil reports APPLIED.
	Apply ApplyFunc
	// Effective, when set, gives the effective config the agent reports after each config it receives
	// (the supervisor reports what its collector runs); the agent then has ReportsEffectiveConfig.
	Effective func(*protobufs.AgentRemoteConfig) string
	// OwnMetrics adds the ReportsOwnMetrics capability, as spec.supervisor.ownMetrics does.
	OwnMetrics bool
}

// Agent is a running simulated supervisor.
type Agent struct {
	UID      uuid.UUID
	client   opampclient.OpAMPClient
	stopOnce sync.Once

	mu        sync.Mutex
	configs   []*protobufs.AgentRemoteConfig
	errs      []*protobufs.ServerErrorResponse
	commands  []*protobufs.ServerToAgentCommand
	apply     ApplyFunc
	effective func(*protobufs.AgentRemoteConfig) string
	current   string
	offers    []*protobufs.TelemetryConnectionSettings
}

// Start connects an agent to the OpAMP server at addr (host:port) with the bearer token. It is stopped
// when the test ends.
func Start(t testing.TB, addr, token string, o Options) *Agent {
	t.Helper()
	if o.UID == uuid.Nil {
		o.UID = uuid.Must(uuid.NewV7())
	}
	a := &Agent{UID: o.UID, apply: o.Apply, effective: o.Effective}
	settings := clienttypes.StartSettings{
		Header:      http.Header{"Authorization": []string{"Bearer " + token}},
		InstanceUid: clienttypes.InstanceUid(o.UID),
		Callbacks: clienttypes.Callbacks{
			OnMessage: a.onMessage,
			OnError: func(_ context.Context, err *protobufs.ServerErrorResponse) {
				a.mu.Lock()
				a.errs = append(a.errs, err)
				a.mu.Unlock()
			},
			OnCommand: func(_ context.Context, cmd *protobufs.ServerToAgentCommand) error {
				a.mu.Lock()
				a.commands = append(a.commands, cmd)
				a.mu.Unlock()
				return nil
			},
		},
	}
	if o.Effective != nil {
		// Only then: opamp-go sends whatever this returns in the first message, capability or not.
		settings.Callbacks.GetEffectiveConfig = func(context.Context) (*protobufs.EffectiveConfig, error) {
			a.mu.Lock()
			defer a.mu.Unlock()
			return &protobufs.EffectiveConfig{ConfigMap: &protobufs.AgentConfigMap{ConfigMap: map[string]*protobufs.AgentConfigFile{
				"": {Body: []byte(a.current)},
			}}}, nil
		}
	}
	if o.HTTP {
		a.client = opampclient.NewHTTP(nil)
		settings.OpAMPServerURL = "http://" + addr + "/v1/opamp"
		poll := 50 * time.Millisecond
		settings.HeartbeatInterval = &poll
	} else {
		a.client = opampclient.NewWebSocket(nil)
		settings.OpAMPServerURL = "ws://" + addr + "/v1/opamp"
	}
	caps := Capabilities
	if o.OwnMetrics {
		caps |= protobufs.AgentCapabilities_AgentCapabilities_ReportsOwnMetrics
	}
	if o.Effective != nil {
		caps |= protobufs.AgentCapabilities_AgentCapabilities_ReportsEffectiveConfig |
			protobufs.AgentCapabilities_AgentCapabilities_AcceptsRestartCommand
	}
	if err := a.client.SetAgentDescription(Description(o.Host)); err != nil {
		t.Fatal(err)
	}
	// Health first: SetCapabilities refuses ReportsHealth without it.
	if err := a.client.SetHealth(&protobufs.ComponentHealth{Healthy: true}); err != nil {
		t.Fatal(err)
	}
	if err := a.client.SetCapabilities(&caps); err != nil {
		t.Fatal(err)
	}
	if err := a.client.Start(context.Background(), settings); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Stop)
	return a
}

// Stop disconnects the agent; it is idempotent, as a second opamp-go Stop blocks forever.
func (a *Agent) Stop() {
	a.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = a.client.Stop(ctx)
	})
}

// SetHealth reports the collector healthy or not.
func (a *Agent) SetHealth(healthy bool, lastError string) error {
	return a.client.SetHealth(&protobufs.ComponentHealth{Healthy: healthy, LastError: lastError})
}

func (a *Agent) onMessage(_ context.Context, msg *clienttypes.MessageData) {
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
	apply := a.apply
	a.mu.Unlock()
	status, text := protobufs.RemoteConfigStatuses_RemoteConfigStatuses_APPLIED, ""
	if apply != nil {
		status, text = apply(msg.RemoteConfig)
	}
	if a.effective != nil {
		a.mu.Lock()
		a.current = a.effective(msg.RemoteConfig)
		a.mu.Unlock()
		_ = a.client.UpdateEffectiveConfig(context.Background())
	}
	_ = a.client.SetRemoteConfigStatus(&protobufs.RemoteConfigStatus{
		LastRemoteConfigHash: msg.RemoteConfig.ConfigHash,
		Status:               status,
		ErrorMessage:         text,
	})
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

// Errors is every ServerErrorResponse the agent got.
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
