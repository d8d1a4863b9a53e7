package collectorconfig

import (
	"strings"
	"testing"
)

const valid = `# comments survive, and so do null values
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:4317
  otlp/2:
connectors:
  forward:
processors:
  batch:
exporters:
  debug:
extensions:
  health_check:
service:
  extensions: [health_check]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [forward]
    traces/out:
      receivers: [forward, otlp/2]
      exporters: [debug]
`

func TestValidate(t *testing.T) {
	cases := []struct {
		name    string
		config  string
		wantErr string // substring; empty means valid
	}{
		{name: "valid with connectors and null values", config: valid},
		{name: "not YAML", config: "receivers: [otlp\n", wantErr: "config is not valid YAML"},
		{name: "a list", config: "- a\n- b\n", wantErr: "must be a YAML map"},
		{name: "a scalar", config: "hello\n", wantErr: "must be a YAML map"},
		{name: "empty document", config: "# nothing\n", wantErr: "not an empty document"},
		{name: "no service", config: "receivers:\n  otlp:\n", wantErr: "no service section"},
		{name: "no pipelines", config: "service:\n  extensions: []\n", wantErr: "no service.pipelines"},
		{name: "empty pipelines", config: "service:\n  pipelines: {}\n", wantErr: "no service.pipelines"},
		{
			name:    "undefined receiver",
			config:  "exporters:\n  debug:\nservice:\n  pipelines:\n    logs:\n      receivers: [filelog]\n      exporters: [debug]\n",
			wantErr: `pipeline "logs" references receiver "filelog", which is not defined in receivers`,
		},
		{
			name:    "undefined processor",
			config:  "receivers:\n  otlp:\nexporters:\n  debug:\nservice:\n  pipelines:\n    logs:\n      receivers: [otlp]\n      processors: [batch]\n      exporters: [debug]\n",
			wantErr: `pipeline "logs" references processor "batch", which is not defined in processors`,
		},
		{
			name:    "undefined exporter",
			config:  "receivers:\n  otlp:\nservice:\n  pipelines:\n    metrics:\n      receivers: [otlp]\n      exporters: [otlphttp]\n",
			wantErr: `pipeline "metrics" references exporter "otlphttp", which is not defined in exporters`,
		},
		{
			name:    "pipeline without exporters",
			config:  "receivers:\n  otlp:\nservice:\n  pipelines:\n    metrics:\n      receivers: [otlp]\n",
			wantErr: `pipeline "metrics" has no exporters`,
		},
		{
			name:    "unknown signal",
			config:  "receivers:\n  otlp:\nexporters:\n  debug:\nservice:\n  pipelines:\n    spans:\n      receivers: [otlp]\n      exporters: [debug]\n",
			wantErr: `pipeline "spans": type "spans" is not one of`,
		},
		{
			name:    "receivers not a list",
			config:  "receivers:\n  otlp:\nexporters:\n  debug:\nservice:\n  pipelines:\n    logs:\n      receivers: otlp\n      exporters: [debug]\n",
			wantErr: `pipeline "logs": receivers must be a list of component IDs`,
		},
		{
			name:    "undefined extension",
			config:  "receivers:\n  otlp:\nexporters:\n  debug:\nservice:\n  extensions: [pprof]\n  pipelines:\n    logs:\n      receivers: [otlp]\n      exporters: [debug]\n",
			wantErr: `service.extensions references "pprof"`,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Validate(c.config)
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want error containing %q", c.wantErr)
			}
			if !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("Validate() = %q, want it to contain %q", err, c.wantErr)
			}
		})
	}
}

func TestValidateNamesEveryProblem(t *testing.T) {
	cfg := "service:\n  pipelines:\n    logs:\n      receivers: [a]\n      exporters: [b]\n"
	err := Validate(cfg)
	if err == nil || !strings.Contains(err.Error(), `receiver "a"`) || !strings.Contains(err.Error(), `exporter "b"`) {
		t.Fatalf("Validate() = %v, want both problems named", err)
	}
}

func TestHashIsOfExactBytes(t *testing.T) {
	if Hash(valid) == Hash(valid+"\n") {
		t.Fatal("hash ignores a trailing newline; it must cover the exact bytes")
	}
	// sha256 of the empty string, a known vector.
	if got := Hash(""); got != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Fatalf("Hash(\"\") = %s", got)
	}
}
