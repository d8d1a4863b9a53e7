package chart_test

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/linkmesh/linkmesh-operator/test/framework/testenv"
)

// TestFlagsExist: every flag the chart passes (with any values set) is one cmd/manager defines, so the pod does
// not crash-loop on "flag provided but not defined".
func TestFlagsExist(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "manager")
	build := exec.Command("go", "build", "-o", bin, "./cmd/manager")
	build.Dir = testenv.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building cmd/manager: %v\n%s", err, out)
	}
	help, _ := exec.Command(bin, "-h").CombinedOutput() // flag's -h exits 0 or 2 depending on the flag set
	defined := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z0-9-]+)`).FindAllStringSubmatch(string(help), -1) {
		defined[m[1]] = true
	}
	if !defined["external-url"] {
		t.Fatalf("could not read cmd/manager's flags from -h:\n%s", help)
	}

	sets := []renderOpts{defaultRender(), {release: release, namespace: namespace, set: []string{"opamp.containerPort=4443", "agentImage=example.com/agent:1"}}}
	for _, f := range ciValues(t) {
		sets = append(sets, renderOpts{release: release, namespace: namespace, valuesFiles: []string{f}})
	}
	for _, o := range sets {
		dep := mustFind(t, render(t, o), "Deployment", release)
		containers, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
		args, _, _ := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
		for _, a := range args {
			name := strings.SplitN(strings.TrimLeft(a, "-"), "=", 2)[0]
			if !defined[name] {
				t.Errorf("with %v the chart passes %q, which cmd/manager does not define", append(o.valuesFiles, o.set...), a)
			}
		}
	}
}
