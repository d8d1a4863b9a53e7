package chart_test

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/linkmesh/linkmesh-operator/test/framework/testenv"
)

// TestConfigMatchesChart: `kubectl apply -k config/default` and `helm install linkmesh-operator -n
// linkmesh-system` install the same objects. Labels and annotations differ (Helm's own, the CRDs' keep), and
// config/ creates the Namespace that helm install --create-namespace creates; everything else must be equal.
func TestConfigMatchesChart(t *testing.T) {
	fromConfig := kustomizeResources(t, filepath.Join(testenv.RepoRoot(), "config", "default"))
	fromChart := render(t, defaultRender())

	want := map[string]*unstructured.Unstructured{}
	for _, o := range fromChart {
		want[key(o)] = comparable(o)
	}
	got := map[string]*unstructured.Unstructured{}
	for _, o := range fromConfig {
		if o.GetKind() == "Namespace" {
			continue
		}
		got[key(o)] = comparable(o)
	}
	for _, k := range sortedKeys(want) {
		w := want[k]
		g, ok := got[k]
		if !ok {
			t.Errorf("the chart renders %s, config/default does not", k)
			continue
		}
		if !equality.Semantic.DeepEqual(g.Object, w.Object) {
			t.Errorf("%s differs between config/default and the chart\n--- config\n%s--- chart\n%s", k, toYAML(t, g), toYAML(t, w))
		}
	}
	for _, k := range sortedKeys(got) {
		if _, ok := want[k]; !ok {
			t.Errorf("config/default has %s, the chart does not render it", k)
		}
	}
}

// TestChartRBACIsGenerated: the chart's rules are config/rbac's (controller-gen's, from the +kubebuilder:rbac
// markers), so a marker added for the OpAMP server reaches the chart through make manifests.
func TestChartRBACIsGenerated(t *testing.T) {
	objs := render(t, defaultRender())
	for _, c := range []struct{ file, kind, name string }{
		{"role.yaml", "ClusterRole", release},
		{"leader_election_role.yaml", "Role", release + "-leader-election"},
	} {
		fromConfig := readObjects(t, filepath.Join(testenv.RepoRoot(), "config", "rbac", c.file))
		if len(fromConfig) != 1 {
			t.Fatalf("config/rbac/%s: want one object, got %d", c.file, len(fromConfig))
		}
		want := fromConfig[0].Object["rules"]
		got := mustFind(t, objs, c.kind, c.name).Object["rules"]
		if !equality.Semantic.DeepEqual(got, want) {
			t.Errorf("%s %s rules differ from config/rbac/%s: run make manifests (or make helm-sync)", c.kind, c.name, c.file)
		}
	}
}

// kustomizeResources reads a kustomization that only lists resources (files or directories with their own
// kustomization.yaml), which is all config/ uses; any other field fails the test rather than being ignored.
func kustomizeResources(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	k := map[string]any{}
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatalf("%s/kustomization.yaml: %v", dir, err)
	}
	for field := range k {
		if field != "resources" && field != "apiVersion" && field != "kind" {
			t.Fatalf("%s/kustomization.yaml uses %q, which this test does not interpret; teach it, or compare with kubectl kustomize", dir, field)
		}
	}
	resources, _ := k["resources"].([]any)
	var objs []*unstructured.Unstructured
	for _, r := range resources {
		path := filepath.Join(dir, r.(string))
		if fi, err := os.Stat(path); err == nil && fi.IsDir() {
			objs = append(objs, kustomizeResources(t, path)...)
			continue
		}
		objs = append(objs, readObjects(t, path)...)
	}
	return objs
}

func readObjects(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeObjects(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return objs
}

// comparable drops the top-level labels and annotations, where Helm and kustomize installs legitimately differ.
func comparable(o *unstructured.Unstructured) *unstructured.Unstructured {
	c := o.DeepCopy()
	unstructured.RemoveNestedField(c.Object, "metadata", "labels")
	unstructured.RemoveNestedField(c.Object, "metadata", "annotations")
	return c
}

func toYAML(t *testing.T, o *unstructured.Unstructured) string {
	t.Helper()
	b, err := yaml.Marshal(o.Object)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sortedKeys is for stable messages.
func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
