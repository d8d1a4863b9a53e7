package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// krewPlugin is the part of krew's plugin manifest (kind Plugin, krew.googlecontainertools.github.com/v1alpha2)
// that plugins/linkmesh.yaml uses; read strictly, so a misspelt field fails here rather than in krew.
type krewPlugin struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Version          string `json:"version"`
		Homepage         string `json:"homepage"`
		ShortDescription string `json:"shortDescription"`
		Description      string `json:"description"`
		Platforms        []struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			URI    string `json:"uri"`
			Sha256 string `json:"sha256"`
			Bin    string `json:"bin"`
		} `json:"platforms"`
	} `json:"spec"`
}

// TestKrewManifest: plugins/linkmesh.yaml is a krew plugin manifest for the release of the chart's
// appVersion, with one archive per platform hack/krew-manifest.sh builds, named as that script names them.
func TestKrewManifest(t *testing.T) {
	root := filepath.Join("..", "..")
	path := filepath.Join(root, "plugins", "linkmesh.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var p krewPlugin
	if err := yaml.UnmarshalStrict(b, &p); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if p.APIVersion != "krew.googlecontainertools.github.com/v1alpha2" || p.Kind != "Plugin" {
		t.Errorf("apiVersion %q, kind %q: not a krew plugin manifest", p.APIVersion, p.Kind)
	}
	// krew requires the manifest's file to be named after the plugin.
	if p.Metadata.Name != "linkmesh" || strings.TrimSuffix(filepath.Base(path), ".yaml") != p.Metadata.Name {
		t.Errorf("metadata.name %q does not match %s", p.Metadata.Name, filepath.Base(path))
	}
	chart, err := os.ReadFile(filepath.Join(root, "charts", "linkmesh-operator", "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^appVersion: "?([0-9]+\.[0-9]+\.[0-9]+)"?$`).FindSubmatch(chart)
	if m == nil {
		t.Fatal("Chart.yaml has no appVersion")
	}
	if want := "v" + string(m[1]); p.Spec.Version != want {
		t.Errorf("spec.version %q, but the release is %s: run make krew-manifest", p.Spec.Version, want)
	}
	if p.Spec.Homepage == "" || p.Spec.ShortDescription == "" || p.Spec.Description == "" {
		t.Error("homepage, shortDescription and description are required by krew-index")
	}
	sha := regexp.MustCompile(`^[0-9a-f]{64}$`)
	seen := map[string]bool{}
	for _, pl := range p.Spec.Platforms {
		goos, arch := pl.Selector.MatchLabels["os"], pl.Selector.MatchLabels["arch"]
		key := goos + "/" + arch
		if seen[key] {
			t.Errorf("%s twice", key)
		}
		seen[key] = true
		wantURI := fmt.Sprintf("https://github.com/linkmesh/linkmesh-operator/releases/download/%s/kubectl-linkmesh_%s_%s_%s.tar.gz",
			p.Spec.Version, p.Spec.Version, goos, arch)
		if pl.URI != wantURI {
			t.Errorf("%s: uri %q, want %q", key, pl.URI, wantURI)
		}
		if !sha.MatchString(pl.Sha256) {
			t.Errorf("%s: sha256 %q is not a sha256", key, pl.Sha256)
		}
		if pl.Bin != "kubectl-linkmesh" {
			t.Errorf("%s: bin %q, want kubectl-linkmesh", key, pl.Bin)
		}
	}
	for _, key := range []string{"linux/amd64", "linux/arm64", "darwin/amd64", "darwin/arm64"} {
		if !seen[key] {
			t.Errorf("no archive for %s", key)
		}
	}
}
