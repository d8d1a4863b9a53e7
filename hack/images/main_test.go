package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// member is what the test checks of one layer entry.
type member struct {
	mode    int64
	dir     bool
	content string
}

func TestBuildReadsBack(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "app")
	if err := os.WriteFile(src, []byte("#!/bin/true\n"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(src, 0o750); err != nil { // the umask must not decide the expected mode
		t.Fatal(err)
	}
	s := spec{
		Tag:        "linkmesh.local/test:dev",
		Out:        filepath.Join(dir, "img.tar"),
		Entrypoint: []string{"/usr/bin/app", "--"},
		Cmd:        []string{"--flag"},
		User:       "65532:65532",
		Env:        []string{"A=b"},
		WorkingDir: "/",
		Files:      []string{"/usr/bin/app=" + src},
		Dirs:       []string{"/tmp:1777"},
	}
	digest, err := build(s)
	if err != nil {
		t.Fatal(err)
	}
	first, err := os.ReadFile(s.Out)
	if err != nil {
		t.Fatal(err)
	}

	img, err := tarball.ImageFromPath(s.Out, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := img.Digest(); err != nil || got != digest {
		t.Errorf("digest read back = %v, %v; build returned %v", got, err, digest)
	}
	checkConfig(t, img)
	checkLayer(t, img, map[string]member{
		"tmp/":        {mode: 0o1777, dir: true},
		"usr/":        {mode: 0o755, dir: true},
		"usr/bin/":    {mode: 0o755, dir: true},
		"usr/bin/app": {mode: 0o750, content: "#!/bin/true\n"},
	})

	if _, err := build(s); err != nil {
		t.Fatal(err)
	}
	if second, err := os.ReadFile(s.Out); err != nil || !bytes.Equal(first, second) {
		t.Errorf("a second build of the same inputs differs (err %v)", err)
	}
}

func checkConfig(t *testing.T, img v1.Image) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("platform = %s/%s, want linux/%s", cf.OS, cf.Architecture, runtime.GOARCH)
	}
	c := cf.Config
	if !slices.Equal(c.Entrypoint, []string{"/usr/bin/app", "--"}) || !slices.Equal(c.Cmd, []string{"--flag"}) {
		t.Errorf("entrypoint, cmd = %q, %q", c.Entrypoint, c.Cmd)
	}
	if c.User != "65532:65532" || c.WorkingDir != "/" {
		t.Errorf("user, workdir = %q, %q", c.User, c.WorkingDir)
	}
	if !slices.Equal(c.Env, []string{defaultPath, "A=b"}) {
		t.Errorf("env = %q", c.Env)
	}
}

func checkLayer(t *testing.T, img v1.Image, want map[string]member) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers = %d, %v; want one", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rc.Close() }()
	got := map[string]member{}
	var names []string
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Uid != 0 || hdr.Gid != 0 || hdr.ModTime.Unix() != 0 {
			t.Errorf("%s: uid %d gid %d mtime %v, want 0 0 epoch", hdr.Name, hdr.Uid, hdr.Gid, hdr.ModTime)
		}
		content, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, hdr.Name)
		got[hdr.Name] = member{mode: hdr.Mode, dir: hdr.Typeflag == tar.TypeDir, content: string(content)}
	}
	if !slices.IsSorted(names) {
		t.Errorf("layer entries not sorted: %q", names)
	}
	for n, w := range want {
		if got[n] != w {
			t.Errorf("%s = %+v, want %+v", n, got[n], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("layer entries %q, want %d", names, len(want))
	}
}

func TestBuildErrors(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "f")
	if err := os.WriteFile(src, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	base := spec{Tag: "linkmesh.local/test:dev", Out: filepath.Join(dir, "img.tar")}
	for _, tc := range []struct {
		name string
		edit func(*spec)
		want string
	}{
		{"missing source", func(s *spec) { s.Files = []string{"/f=" + filepath.Join(dir, "nope")} }, "no such file"},
		{"file without =", func(s *spec) { s.Files = []string{"/f"} }, "want /DST/IN/IMAGE=/SRC/ON/HOST"},
		{"relative dst", func(s *spec) { s.Files = []string{"f=" + src} }, "not an absolute path"},
		{"dir without mode", func(s *spec) { s.Dirs = []string{"/tmp"} }, "want /DST:MODE"},
		{"dir bad mode", func(s *spec) { s.Dirs = []string{"/tmp:99"} }, "not octal"},
		{"file under a file", func(s *spec) { s.Files = []string{"/f=" + src, "/f/g=" + src} }, "is a file and also the parent"},
		{"bad tag", func(s *spec) { s.Tag = "Linkmesh.local/UPPER:dev" }, "bad -tag"},
		{"tag without tag", func(s *spec) { s.Tag = "linkmesh.local/test" }, "bad -tag"},
		{"bad env", func(s *spec) { s.Env = []string{"NOEQUALS"} }, "want KEY=VALUE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := base
			tc.edit(&s)
			_, err := build(s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one containing %q", err, tc.want)
			}
			if _, statErr := os.Stat(s.Out); !os.IsNotExist(statErr) {
				t.Errorf("%s written despite the error", s.Out)
			}
		})
	}
}
