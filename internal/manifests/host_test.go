package manifests

import (
	"path/filepath"
	"testing"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/test/framework/supervisoryaml"
)

// TestHostSupervisorYAMLGolden renders a host's file for the supervisor releases around upstream's key
// changes: the product document's 0.135.0, the 0.149.0 this repository runs, 0.161.0 (reports_remote_config
// deprecated) and 0.165.0 (its planned removal).
func TestHostSupervisorYAMLGolden(t *testing.T) {
	cases := []struct {
		name, endpoint, environment, version string
		mc                                   *v1alpha1.ManagedCollector
		// wantReportsRemoteConfig and wantValidateConfig: whether the key is written (always as true).
		wantReportsRemoteConfig, wantValidateConfig bool
	}{
		{name: "host-0.135.0", version: "0.135.0", endpoint: "ws://127.0.0.1:4320/v1/opamp", mc: collector(nil),
			wantReportsRemoteConfig: true},
		{name: "host-0.149.0", version: "0.149.0", endpoint: "ws://127.0.0.1:4320/v1/opamp", mc: collector(nil),
			wantReportsRemoteConfig: true, wantValidateConfig: true},
		{name: "host-0.161.0", version: "0.161.0", endpoint: "ws://127.0.0.1:4320/v1/opamp", mc: collector(nil),
			wantValidateConfig: true},
		{name: "host-0.165.0", version: "v0.165.0", endpoint: "ws://127.0.0.1:4320/v1/opamp", mc: collector(nil),
			wantValidateConfig: true},
		{name: "host-wss-environment", version: "0.149.0", endpoint: "wss://linkmesh.example.com/v1/opamp", environment: "production",
			mc: collector(func(mc *v1alpha1.ManagedCollector) {
				mc.Spec.Supervisor.NonIdentifyingAttributes = map[string]string{"team": "edge", EnvironmentAttribute: "staging"}
			}),
			wantReportsRemoteConfig: true, wantValidateConfig: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := HostSupervisorYAML(c.mc, c.endpoint, "lme_example-token", c.environment, c.version)
			if err != nil {
				t.Fatal(err)
			}
			compareGolden(t, filepath.Join("testdata", c.name+".golden.yaml"), out)

			f, err := supervisoryaml.Parse(out)
			if err != nil {
				t.Fatal(err)
			}
			if f.Server.Endpoint != c.endpoint || f.Server.Headers["Authorization"] != "Bearer lme_example-token" {
				t.Errorf("server = %+v", f.Server)
			}
			for _, capability := range []string{"accepts_remote_config", "reports_effective_config", "reports_health"} {
				if v, ok := f.Capabilities[capability]; !ok || !v {
					t.Errorf("capabilities.%s = %v, %v; want explicitly true", capability, v, ok)
				}
			}
			if v, ok := f.Capabilities["reports_remote_config"]; ok != c.wantReportsRemoteConfig || (ok && !v) {
				t.Errorf("supervisor %s: capabilities.reports_remote_config = %v (written %v), want written %v", c.version, v, ok, c.wantReportsRemoteConfig)
			}
			if f.Agent.ValidateConfig != c.wantValidateConfig {
				t.Errorf("supervisor %s: agent.validate_config = %v, want %v", c.version, f.Agent.ValidateConfig, c.wantValidateConfig)
			}
			if f.Agent.Executable != HostCollectorExecutable || f.Storage.Directory != HostStorageDir {
				t.Errorf("agent = %+v, storage = %+v", f.Agent, f.Storage)
			}
			if c.environment != "" && f.Agent.Description.NonIdentifyingAttributes[EnvironmentAttribute] != c.environment {
				t.Errorf("%s = %q, want %q", EnvironmentAttribute, f.Agent.Description.NonIdentifyingAttributes[EnvironmentAttribute], c.environment)
			}
		})
	}
}

func TestHostSupervisorYAMLRefusesVersions(t *testing.T) {
	for _, v := range []string{"", "latest", "0.149", "0.149.0-rc.1", "0.120.0"} {
		if out, err := HostSupervisorYAML(collector(nil), "ws://127.0.0.1:4320/v1/opamp", "lme_example-token", "", v); err == nil {
			t.Errorf("supervisor version %q: rendered\n%s", v, out)
		}
	}
}
