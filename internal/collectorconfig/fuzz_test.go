package collectorconfig

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzValidateAndParseShape feeds arbitrary documents to Validate and ParseShape, the two readers of
// spec.config and of every effective config a collector reports, and checks that they agree: a config that
// validates parses, its shape has a pipeline and wires only components it defines, it runs itself (no
// drift against its own shape), and against an empty config every component, pipeline and extension of it
// is missing. A document ParseShape refuses never validates. Seeds: testdata/fuzz/FuzzValidateAndParseShape,
// the package's test configs and the ones below.
func FuzzValidateAndParseShape(f *testing.F) {
	f.Add(valid)
	for _, name := range []string{"desired.yaml", "effective-merged.yaml"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	for _, s := range []string{"", "[]", "service: {pipelines: {}}", "a: &x [1]\nb: *x", "receivers: {otlp: }\nservice: {pipelines: {logs: {receivers: [otlp], exporters: [otlp]}}}"} {
		f.Add(s)
	}
	empty, err := ParseShape("{}")
	if err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, config string) {
		verr := Validate(config)
		shape, perr := ParseShape(config)
		if perr != nil {
			if verr == nil {
				t.Fatalf("Validate accepts a config ParseShape refuses: %v", perr)
			}
			return
		}
		if verr != nil {
			if verr.Error() == "" {
				t.Fatal("Validate refuses with an empty message")
			}
			return
		}
		if len(shape.Pipelines) == 0 {
			t.Fatal("a valid config has no pipeline in its shape")
		}
		defined := func(id string, sections ...string) bool {
			for _, sec := range sections {
				if shape.Components[sec][id] {
					return true
				}
			}
			return false
		}
		for name, p := range shape.Pipelines {
			if len(p["receivers"]) == 0 || len(p["exporters"]) == 0 {
				t.Fatalf("valid pipeline %q lacks receivers or exporters: %v", name, p)
			}
			for field, sections := range map[string][]string{
				"receivers": {"receivers", "connectors"}, "processors": {"processors"}, "exporters": {"exporters", "connectors"},
			} {
				for _, id := range p[field] {
					if !defined(id, sections...) {
						t.Fatalf("valid pipeline %q wires %s %q, which its shape does not define", name, field, id)
					}
				}
			}
		}
		for id := range shape.Extensions {
			if !shape.Components["extensions"][id] {
				t.Fatalf("valid config uses extension %q, which its shape does not define", id)
			}
		}
		if m := Missing(shape, shape); len(m) != 0 {
			t.Fatalf("a config drifts from itself: %v", m)
		}
		want := len(shape.Pipelines) + len(shape.Extensions)
		for _, ids := range shape.Components {
			want += len(ids)
		}
		if got := len(Missing(shape, empty)); got != want {
			t.Fatalf("against an empty config %d things are missing, want all %d", got, want)
		}
	})
}
