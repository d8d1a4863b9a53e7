package manifests

import (
	"fmt"
	"time"

	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

// SupervisorOptions is everything that varies in a supervisor.yaml, for DaemonSet pods and enrolled hosts.
type SupervisorOptions struct {
	// Endpoint is the OpAMP URL: ws:// or wss:// and /v1/opamp.
	Endpoint string
	// Authorization is the header value, for example "Bearer ${env:LINKMESH_COLLECTOR_TOKEN}". The supervisor
	// expands ${env:...} and ${file:...} in it, so pods never carry the token in the ConfigMap.
	Authorization string
	// Executable is the collector binary the supervisor runs.
	Executable string
	// StorageDirectory keeps the instance UID and the last config across restarts.
	StorageDirectory string
	// ConfigApplyTimeout is agent.config_apply_timeout.
	ConfigApplyTimeout time.Duration
	// Attributes become agent.description.non_identifying_attributes.
	Attributes map[string]string
	// OwnMetrics sets capabilities.reports_own_metrics, so the server may offer an own_metrics destination.
	OwnMetrics bool
	// SupervisorVersion is the opampsupervisor release that reads the file, for example 0.149.0; keyRules
	// decide from it which keys are written. Required.
	SupervisorVersion string
}

// bootstrapTimeout is agent.bootstrap_timeout.
const bootstrapTimeout = 20 * time.Second

// supervisorConfig mirrors the parts of the upstream opampsupervisor config file that we set. The keys that
// only some versions accept are pointers, set according to keyRules.
type supervisorConfig struct {
	Server       supervisorServer       `json:"server"`
	Capabilities supervisorCapabilities `json:"capabilities"`
	Agent        supervisorAgent        `json:"agent"`
	Storage      supervisorStorage      `json:"storage"`
}

type supervisorServer struct {
	Endpoint string            `json:"endpoint"`
	Headers  map[string]string `json:"headers"`
	TLS      *supervisorTLS    `json:"tls,omitempty"`
}

type supervisorTLS struct {
	Insecure bool `json:"insecure"`
}

// supervisorCapabilities are each written explicitly: upstream defaults accepts_remote_config and, before
// v0.161.0, reports_remote_config to false, and without ReportsRemoteConfig the server never learns whether a
// config applied.
type supervisorCapabilities struct {
	AcceptsRemoteConfig bool `json:"accepts_remote_config"`
	// AcceptsRestartCommand lets the operator restart a collector whose effective config drifted.
	AcceptsRestartCommand bool `json:"accepts_restart_command"`
	// ReportsRemoteConfig is left out from v0.161.0 on, where accepts_remote_config implies it (keyRules).
	ReportsRemoteConfig    *bool `json:"reports_remote_config,omitempty"`
	ReportsEffectiveConfig bool  `json:"reports_effective_config"`
	ReportsHealth          bool  `json:"reports_health"`
	ReportsOwnMetrics      bool  `json:"reports_own_metrics"`
	ReportsHeartbeat       bool  `json:"reports_heartbeat"`
}

type supervisorAgent struct {
	Executable string `json:"executable"`
	// ValidateConfig makes an unknown component fail in milliseconds with the collector's own message,
	// instead of a crash loop every 5 s. Only versions that know the key get it (keyRules).
	ValidateConfig     *bool  `json:"validate_config,omitempty"`
	ConfigApplyTimeout string `json:"config_apply_timeout"`
	// BootstrapTimeout bounds the supervisor's first start of the collector, which asks it for its
	// description. Upstream's 3 s is too short on a loaded node: the supervisor then exits for good.
	BootstrapTimeout string                `json:"bootstrap_timeout"`
	Description      supervisorDescription `json:"description"`
}

type supervisorDescription struct {
	NonIdentifyingAttributes map[string]string `json:"non_identifying_attributes,omitempty"`
}

type supervisorStorage struct {
	Directory string `json:"directory"`
}

// SupervisorYAML renders a supervisor.yaml for the supervisor release o.SupervisorVersion. The output is
// deterministic: map keys are sorted.
func SupervisorYAML(o SupervisorOptions) ([]byte, error) {
	v, err := ParseSupervisorVersion(o.SupervisorVersion)
	if err != nil {
		return nil, err
	}
	cfg := supervisorConfig{
		Server: supervisorServer{
			Endpoint: o.Endpoint,
			Headers:  map[string]string{"Authorization": o.Authorization},
		},
		Capabilities: supervisorCapabilities{
			AcceptsRemoteConfig:    true,
			AcceptsRestartCommand:  true,
			ReportsEffectiveConfig: true,
			ReportsHealth:          true,
			ReportsOwnMetrics:      o.OwnMetrics,
			ReportsHeartbeat:       true,
		},
		Agent: supervisorAgent{
			Executable:         o.Executable,
			ConfigApplyTimeout: o.ConfigApplyTimeout.String(),
			BootstrapTimeout:   bootstrapTimeout.String(),
			Description:        supervisorDescription{NonIdentifyingAttributes: o.Attributes},
		},
		Storage: supervisorStorage{Directory: o.StorageDirectory},
	}
	if writesKey(v, "capabilities.reports_remote_config") {
		cfg.Capabilities.ReportsRemoteConfig = ptr.To(true)
	}
	if writesKey(v, "agent.validate_config") {
		cfg.Agent.ValidateConfig = ptr.To(true)
	}
	if isPlainWebSocket(o.Endpoint) {
		// The supervisor's TLS client settings default to verifying a server; a ws:// endpoint has none.
		cfg.Server.TLS = &supervisorTLS{Insecure: true}
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("marshalling supervisor.yaml: %w", err)
	}
	return out, nil
}

func isPlainWebSocket(endpoint string) bool {
	return len(endpoint) >= 5 && endpoint[:5] == "ws://"
}
