package collectorconfig

import (
	"os"
	"strings"
	"testing"
)

func mustShape(t *testing.T, config string) *Shape {
	t.Helper()
	s, err := ParseShape(config)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func readFixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The fixtures are real: desired.yaml is config/samples' node-agents config, effective-merged.yaml what the
// upstream supervisor v0.149.0 composed from it (its opamp extension, its telemetry, no comments).
func TestMissing(t *testing.T) {
	desired := mustShape(t, readFixture(t, "desired.yaml"))
	merged := readFixture(t, "effective-merged.yaml")
	cases := []struct {
		name      string
		effective string
		want      []string // substrings, one per problem; none means no drift
	}{
		{name: "supervisor-merged config is no drift", effective: merged},
		{
			name:      "a pipeline is missing",
			effective: cut(t, merged, "        traces:\n", "    telemetry:\n"),
			want:      []string{`pipeline "traces"`},
		},
		{
			name:      "a receiver is missing",
			effective: strings.Replace(merged, "receivers:\n    otlp:", "receivers:\n    nop:", 1),
			want:      []string{`receiver "otlp"`},
		},
		{
			name:      "a pipeline is wired differently",
			effective: strings.Replace(merged, "                - memory_limiter\n                - batch\n            receivers:\n                - otlp\n        traces:", "                - batch\n            receivers:\n                - otlp\n        traces:", 1),
			want:      []string{`pipeline "metrics" processors [memory_limiter batch] (runs [batch])`},
		},
		{
			name:      "the empty composition of the startup race",
			effective: "extensions:\n  opamp:\nreceivers:\n  nop:\nexporters:\n  nop:\nservice:\n  extensions: [opamp]\n  pipelines:\n    traces/nop:\n      receivers: [nop]\n      exporters: [nop]\n",
			want:      []string{`receiver "otlp"`, `processor "batch"`, `exporter "debug"`, `pipeline "metrics"`, `pipeline "traces"`},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Missing(desired, mustShape(t, c.effective))
			if len(got) < len(c.want) || (len(c.want) == 0 && len(got) > 0) {
				t.Fatalf("Missing() = %q, want %d problems like %q", got, len(c.want), c.want)
			}
			joined := strings.Join(got, "\n")
			for _, w := range c.want {
				if !strings.Contains(joined, w) {
					t.Errorf("Missing() = %q, want it to name %s", got, w)
				}
			}
		})
	}
}

// cut removes the text from the first from to the following to (exclusive).
func cut(t *testing.T, s, from, to string) string {
	t.Helper()
	i := strings.Index(s, from)
	j := strings.Index(s[i+1:], to)
	if i < 0 || j < 0 {
		t.Fatalf("fixture lacks %q or %q", from, to)
	}
	return s[:i] + s[i+1+j:]
}

func TestKeyIsTheStructure(t *testing.T) {
	base := "receivers: {otlp: {}}\nprocessors: {batch: {}, memory_limiter: {}}\nexporters: {debug: {}}\n" +
		"service: {pipelines: {traces: {receivers: [otlp], processors: [%s], exporters: [debug]}}}"
	key := func(config string) string { return mustShape(t, config).Key() }
	same := key(strings.ReplaceAll(base, "%s", "memory_limiter, batch"))
	for _, tc := range []struct {
		name   string
		config string
		equal  bool
	}{
		{"other settings", strings.ReplaceAll(strings.ReplaceAll(base, "%s", "memory_limiter, batch"), "debug: {}", "debug: {verbosity: detailed}"), true},
		{"processors in another order", strings.ReplaceAll(base, "%s", "batch, memory_limiter"), false},
		{"one processor fewer", strings.ReplaceAll(base, "%s", "batch"), false},
		{"an ID with the key's separators", `receivers: {"otlp,x;": {}}` + "\nexporters: {debug: {}}\nservice: {pipelines: {traces: {receivers: [\"otlp,x;\"], exporters: [debug]}}}", false},
	} {
		if got := key(tc.config) == same; got != tc.equal {
			t.Errorf("%s: same key %v, want %v", tc.name, got, tc.equal)
		}
	}
}
