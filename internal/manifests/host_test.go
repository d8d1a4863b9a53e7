package manifests

import (
	"path/filepath"
	"testing"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/test/framework/supervisoryaml"
)

func TestHostSupervisorYAMLGolden(t *testing.T) {
	cases := []struct {
		name, endpoint, environment string
		mc                          *v1alpha1.ManagedCollector
	}{
		{name: "host-ws", endpoint: "ws://127.0.0.1:4320/v1/opamp", mc: collector(nil)},
		{name: "host-wss-environment", endpoint: "wss://linkmesh.example.com/v1/opamp", environment: "production",
			mc: collector(func(mc *v1alpha1.ManagedCollector) {
				mc.Spec.Supervisor.NonIdentifyingAttributes = map[string]string{"team": "edge", EnvironmentAttribute: "staging"}
			})},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := HostSupervisorYAML(c.mc, c.endpoint, "lme_example-token", c.environment)
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
			for _, capability := range []string{"accepts_remote_config", "reports_remote_config", "reports_effective_config", "reports_health"} {
				if v, ok := f.Capabilities[capability]; !ok || !v {
					t.Errorf("capabilities.%s = %v, %v; want explicitly true", capability, v, ok)
				}
			}
			if !f.Agent.ValidateConfig || f.Agent.Executable != HostCollectorExecutable || f.Storage.Directory != HostStorageDir {
				t.Errorf("agent = %+v, storage = %+v", f.Agent, f.Storage)
			}
			if c.environment != "" && f.Agent.Description.NonIdentifyingAttributes[EnvironmentAttribute] != c.environment {
				t.Errorf("%s = %q, want %q", EnvironmentAttribute, f.Agent.Description.NonIdentifyingAttributes[EnvironmentAttribute], c.environment)
			}
		})
	}
}
