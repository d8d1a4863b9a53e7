package chart_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/linkmesh/linkmesh-operator/test/framework/testenv"
)

var (
	helmOnce sync.Once
	helmPath string
	helmErr  error
)

// helmBinary is $HELM (make test sets it), else hack/helm-binary.sh builds or reuses the pinned helm, so a bare
// `go test ./test/chart` works on a fresh machine too.
func helmBinary(t *testing.T) string {
	t.Helper()
	helmOnce.Do(func() {
		if p := os.Getenv("HELM"); p != "" {
			helmPath = p
			return
		}
		cmd := exec.Command(filepath.Join(testenv.RepoRoot(), "hack", "helm-binary.sh"))
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			helmErr = fmt.Errorf("hack/helm-binary.sh: %w", err)
			return
		}
		helmPath = strings.TrimSpace(string(out))
	})
	if helmErr != nil {
		t.Fatal(helmErr)
	}
	return helmPath
}

// runHelm runs helm and returns its stdout; a failure carries stderr.
func runHelm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helmBinary(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// renderOpts are the inputs of one `helm template`.
type renderOpts struct {
	release, namespace string
	valuesFiles        []string
	set                []string
}

func defaultRender() renderOpts { return renderOpts{release: release, namespace: namespace} }

func (o renderOpts) args() []string {
	args := []string{"template", o.release, chartDir, "--namespace", o.namespace}
	for _, f := range o.valuesFiles {
		args = append(args, "--values", f)
	}
	for _, s := range o.set {
		args = append(args, "--set", s)
	}
	return args
}

// renderText is the raw output of helm template.
func renderText(t *testing.T, o renderOpts) string {
	t.Helper()
	out, err := runHelm(t, o.args()...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// render is helm template's output as objects, in helm's install order.
func render(t *testing.T, o renderOpts) []*unstructured.Unstructured {
	t.Helper()
	objs, err := decodeObjects(strings.NewReader(renderText(t, o)))
	if err != nil {
		t.Fatalf("decoding helm template output: %v", err)
	}
	return objs
}

// decodeObjects reads a multi-document YAML stream, skipping empty documents.
func decodeObjects(r io.Reader) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(r, 4096)
	var objs []*unstructured.Unstructured
	for {
		u := map[string]any{}
		if err := dec.Decode(&u); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, err
		}
		if len(u) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: u})
	}
}

// ciValues lists charts/linkmesh-operator/ci/*-values.yaml, the value sets chart-testing and these tests use.
func ciValues(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no ci/*-values.yaml in %s: %v", chartDir, err)
	}
	sort.Strings(files)
	return files
}

// find returns the rendered object of that kind and name, or nil.
func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

func mustFind(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	o := find(objs, kind, name)
	if o == nil {
		t.Fatalf("the chart renders no %s %q; it renders %v", kind, name, keys(objs))
	}
	return o
}

func keys(objs []*unstructured.Unstructured) []string {
	var ks []string
	for _, o := range objs {
		ks = append(ks, key(o))
	}
	return ks
}

func key(o *unstructured.Unstructured) string {
	return o.GetKind() + " " + strings.TrimPrefix(o.GetNamespace()+"/"+o.GetName(), "/")
}
