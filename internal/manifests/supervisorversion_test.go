package manifests

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/version"
	"sigs.k8s.io/yaml"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
)

func TestParseSupervisorVersion(t *testing.T) {
	cases := []struct {
		in, want, wantErr string
	}{
		{in: "0.135.0", want: "0.135.0"},
		{in: "0.149.0", want: "0.149.0"},
		{in: "v0.161.0", want: "0.161.0"},
		{in: "1.0.0", want: "1.0.0"},
		{in: "", wantErr: `supervisor version "" is not a release version such as 0.149.0`},
		{in: "latest", wantErr: `supervisor version "latest" is not a release version`},
		{in: "0.149", wantErr: "is not a release version"},
		{in: "0.149.0-rc.1", wantErr: "is not a release version"},
		{in: " 0.149.0", wantErr: "is not a release version"},
		{in: "0.149.0\n", wantErr: "is not a release version"},
		{in: "0.134.9", wantErr: "supervisor version 0.134.9 is older than 0.135.0, the oldest LinkMesh renders supervisor.yaml for"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			v, err := ParseSupervisorVersion(c.in)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want one saying %q", err, c.wantErr)
				}
				return
			}
			if err != nil || v.String() != c.want {
				t.Fatalf("got %v, %v; want %s", v, err, c.want)
			}
		})
	}
}

// TestKeyRulesDecideTheFile: each row of keyRules, on either side of its bounds, adds or drops exactly its
// key in the rendered file, so the table and the renderer cannot drift apart.
func TestKeyRulesDecideTheFile(t *testing.T) {
	for _, r := range keyRules {
		if r.upstream == "" {
			t.Errorf("rule %s cites no upstream change", r.key)
		}
		var in, out []string
		if r.since != "" {
			in = append(in, r.since)
			out = append(out, previousPatchOrMinor(t, r.since))
		}
		if r.until != "" {
			in = append(in, previousPatchOrMinor(t, r.until))
			out = append(out, r.until)
		}
		for _, v := range in {
			if !hasKey(t, render(t, v), r.key) {
				t.Errorf("supervisor %s is not given %s", v, r.key)
			}
		}
		for _, v := range out {
			if hasKey(t, render(t, v), r.key) {
				t.Errorf("supervisor %s is given %s", v, r.key)
			}
		}
	}
}

func previousPatchOrMinor(t *testing.T, s string) string {
	t.Helper()
	v := version.MustParseGeneric(s)
	if v.Patch() > 0 {
		return v.WithPatch(v.Patch() - 1).String()
	}
	return v.WithMinor(v.Minor() - 1).WithPatch(0).String()
}

func render(t *testing.T, v string) map[string]any {
	t.Helper()
	out, err := SupervisorYAML(SupervisorOptions{
		Endpoint: "ws://127.0.0.1:4320/v1/opamp", Authorization: "Bearer x", Executable: "/otelcol",
		StorageDirectory: "/var/lib/otelcol-supervisor", ConfigApplyTimeout: DefaultConfigApplyTimeout, SupervisorVersion: v,
	})
	if err != nil {
		t.Fatalf("supervisor %s: %v", v, err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func hasKey(t *testing.T, m map[string]any, dotted string) bool {
	t.Helper()
	parts := strings.Split(dotted, ".")
	for i, p := range parts {
		v, ok := m[p]
		if !ok {
			return false
		}
		if i == len(parts)-1 {
			return true
		}
		if m, ok = v.(map[string]any); !ok {
			t.Fatalf("%s: %s is not a map", dotted, p)
		}
	}
	return false
}

func TestPodSupervisorVersion(t *testing.T) {
	cases := []struct {
		name         string
		spec         string
		image        string
		defaultImage string
		want         string
	}{
		{name: "the default image's tag", defaultImage: DefaultSupervisorImage, want: DefaultPodSupervisorVersion},
		{name: "another default image", defaultImage: "registry.example/agent:0.161.0", want: "0.161.0"},
		{name: "spec.images.supervisor's tag", image: "registry.example:5000/team/agent:v0.165.0", defaultImage: DefaultSupervisorImage, want: "v0.165.0"},
		{name: "a tag that is not a version", image: "linkmesh.local/otelcol-agent:dev", defaultImage: DefaultSupervisorImage, want: DefaultPodSupervisorVersion},
		{name: "a digest only", image: "registry.example:5000/agent@sha256:0123", defaultImage: DefaultSupervisorImage, want: DefaultPodSupervisorVersion},
		{name: "no tag, a registry port", image: "registry.example:5000/agent", defaultImage: DefaultSupervisorImage, want: DefaultPodSupervisorVersion},
		{name: "tag and digest", image: "registry.example/agent:0.161.0@sha256:0123", defaultImage: DefaultSupervisorImage, want: "0.161.0"},
		{name: "spec.supervisor.version wins", spec: "0.135.0", image: "registry.example/agent:0.161.0", defaultImage: DefaultSupervisorImage, want: "0.135.0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mc := collector(func(mc *v1alpha1.ManagedCollector) {
				mc.Spec.Supervisor.Version = c.spec
				mc.Spec.Images.Supervisor = c.image
			})
			if got := PodSupervisorVersion(mc, c.defaultImage); got != c.want {
				t.Fatalf("version %q, want %q", got, c.want)
			}
		})
	}
}

// TestPodSupervisorYAMLFollowsTheVersion: a pod image of 0.161.0 gets no reports_remote_config, and a
// version older than the rules cover is an error rather than a file its supervisor may refuse.
func TestPodSupervisorYAMLFollowsTheVersion(t *testing.T) {
	mc := collector(func(mc *v1alpha1.ManagedCollector) { mc.Spec.Images.Supervisor = "registry.example/agent:0.161.0" })
	out, err := PodSupervisorYAML(mc, testEndpoint, DefaultSupervisorImage)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	if hasKey(t, m, "capabilities.reports_remote_config") || !hasKey(t, m, "capabilities.accepts_remote_config") {
		t.Errorf("supervisor 0.161.0:\n%s", out)
	}

	// The operator's --agent-image decides for pods without spec.images.supervisor.
	out, err = PodSupervisorYAML(collector(nil), testEndpoint, "registry.example/agent:0.161.0")
	if err != nil {
		t.Fatal(err)
	}
	if m = nil; yaml.Unmarshal(out, &m) != nil || hasKey(t, m, "capabilities.reports_remote_config") {
		t.Errorf("default image of supervisor 0.161.0:\n%s", out)
	}

	mc.Spec.Supervisor.Version = "0.120.0"
	if _, err := PodSupervisorYAML(mc, testEndpoint, DefaultSupervisorImage); err == nil || !strings.Contains(err.Error(), "older than 0.135.0") {
		t.Errorf("supervisor 0.120.0: error %v", err)
	}
}
