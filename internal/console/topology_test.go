package console

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/console -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from what was rendered (go test ./internal/console -update rewrites it after an intended change)\n--- got\n%s", path, got)
	}
}

func q(s string) *resource.Quantity { v := resource.MustParse(s); return &v }

const fanOutConfig = `receivers:
  otlp:
    protocols: {grpc: {}}
  filelog: {include: [/var/log/*.log]}
processors:
  memory_limiter: {check_interval: 1s, limit_percentage: 80}
  batch: {}
exporters:
  otlp_http/backend: {endpoint: "https://otel.example.com"}
  debug: {}
connectors:
  spanmetrics: {}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter, batch]
      exporters: [otlp_http/backend, spanmetrics]
    metrics:
      receivers: [otlp, spanmetrics]
      processors: [batch]
      exporters: [otlp_http/backend]
    logs:
      receivers: [filelog]
      exporters: [debug]
`

func fanOutThroughput() *v1alpha1.ThroughputStatus {
	return &v1alpha1.ThroughputStatus{
		Reporting: 3,
		Spans:     &v1alpha1.SignalThroughput{Accepted: q("1250"), Refused: q("0"), Sent: q("1240"), Failed: q("2500m")},
		Components: []v1alpha1.ComponentThroughput{
			{Kind: v1alpha1.ComponentReceiver, Name: "otlp", Signal: v1alpha1.SignalSpans, Rate: q("1250"), ErrorRate: q("0")},
			{Kind: v1alpha1.ComponentExporter, Name: "otlp_http/backend", Signal: v1alpha1.SignalSpans, Rate: q("1240"), ErrorRate: q("2500m"),
				QueueSize: ptr.To[int64](12), QueueCapacity: ptr.To[int64](3000)},
			{Kind: v1alpha1.ComponentReceiver, Name: "otlp", Signal: v1alpha1.SignalMetricPoints, Rate: q("40"), ErrorRate: q("0")},
			{Kind: v1alpha1.ComponentReceiver, Name: "filelog", Signal: v1alpha1.SignalLogRecords, Rate: q("7"), ErrorRate: q("500m")},
		},
	}
}

func TestRenderTopology(t *testing.T) {
	cases := []struct {
		name, config string
		th           *v1alpha1.ThroughputStatus
	}{
		{"one-pipeline", `receivers: {otlp: {protocols: {grpc: {}}}}
exporters: {debug: {}}
service: {pipelines: {traces: {receivers: [otlp], exporters: [debug]}}}
`, nil},
		{"fan-out-connector-throughput", fanOutConfig, fanOutThroughput()},
		{"escaped-names", `receivers: {"otlp/<b>&": {}}
exporters: {"debug/a-very-long-exporter-name-that-is-cut": {}}
service: {pipelines: {"logs/\"x\"": {receivers: ["otlp/<b>&"], exporters: ["debug/a-very-long-exporter-name-that-is-cut"]}}}
`, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			svg, err := RenderTopology(c.config, c.th)
			if err != nil {
				t.Fatal(err)
			}
			again, _ := RenderTopology(c.config, c.th)
			if again != svg {
				t.Error("two renders of the same input differ")
			}
			golden(t, "topology-"+c.name+".svg", svg)
		})
	}
}

// TestTopologyShowsWhatStatusSays checks the numbers a user reads on the fan-out graph.
func TestTopologyShowsWhatStatusSays(t *testing.T) {
	svg, err := RenderTopology(fanOutConfig, fanOutThroughput())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`data-component="receiver/otlp" data-pipeline="traces"`,
		`data-component="processor/memory_limiter" data-pipeline="traces"`,
		`data-component="connector/spanmetrics" data-pipeline="traces"`,
		`data-component="connector/spanmetrics" data-pipeline="metrics"`,
		`class="link" data-connector="spanmetrics"`,
		`1.25k/s · 0 refused/s`,    // the traces pipeline's otlp receiver
		`>1.24k/s · 2.5 failed/s<`, // its exporter, failing
		`>queue 12/3000<`,
		`40/s · 0 refused/s`,  // the same receiver in the metrics pipeline
		`7/s · 0.5 refused/s`, // filelog
		`traces — spans: 1.25k/s in, 1.24k/s out, 2.5/s failed`,
		`>1.24k/s (2.5 failed)<`,
	} {
		if !strings.Contains(svg, want) {
			t.Errorf("the graph lacks %q", want)
		}
	}
	if strings.Count(svg, `class="node exporter bad"`) != 1 {
		t.Errorf("want exactly the failing exporter marked bad")
	}
}

func TestTopologyRefusesWhatItCannotDraw(t *testing.T) {
	for name, config := range map[string]string{
		"not YAML":     "receivers: [",
		"no pipelines": "receivers: {otlp: {}}\n",
	} {
		if _, err := RenderTopology(config, nil); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestFormatRate(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 0.5: "0.5", 0.0123: "0.0123", 12.34: "12.3", 100: "100", 1250: "1.25k", 2e6: "2M", 999.9: "1000"} {
		if got := formatRate(in); got != want {
			t.Errorf("formatRate(%v) = %q, want %q", in, got, want)
		}
	}
}
