// Command imagebuild builds a one-layer OCI image from files on this host and writes it as a docker-archive
// tarball, the format `ctr -n k8s.io images import` reads. It exists because this machine has no Docker engine
// and reaches no container registry: the images a local containerd runs are assembled from binaries built here,
// with go-containerregistry doing the image and archive formats.
//
// Usage:
//
//	imagebuild -tag linkmesh.local/x:dev -out x.tar -entrypoint /x [-cmd ARG ...] [-user 65532:65532]
//	  [-env K=V ...] [-workdir /] -file /dst/in/image=/src/on/host [-file ...] [-dir /tmp:1777 ...]
//
// The output depends only on the inputs (fixed timestamps, owner 0:0, sorted entries), so building twice gives
// the same tarball and the same image digest.
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// defaultPath is what a shell-less image needs for exec of bare names; docker build would set the same.
const defaultPath = "PATH=/usr/local/bin:/usr/bin:/bin"

// epoch is the mtime of every layer entry, so the layer digest depends on contents only.
var epoch = time.Unix(0, 0).UTC()

// spec is everything an image is built from.
type spec struct {
	Tag        string
	Out        string
	Entrypoint []string
	Cmd        []string
	User       string
	Env        []string
	WorkingDir string
	Files      []string // DST=SRC
	Dirs       []string // DST:MODE (octal)
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	s, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "imagebuild:", err)
		os.Exit(2)
	}
	digest, err := build(s)
	if err != nil {
		fmt.Fprintln(os.Stderr, "imagebuild:", err)
		os.Exit(1)
	}
	fmt.Println(digest, s.Tag)
}

func parseFlags(args []string) (spec, error) {
	var s spec
	fs := flag.NewFlagSet("imagebuild", flag.ContinueOnError)
	fs.StringVar(&s.Tag, "tag", "", "image reference written into the archive, e.g. linkmesh.local/x:dev (required)")
	fs.StringVar(&s.Out, "out", "", "path of the docker-archive tarball to write (required)")
	fs.StringVar(&s.User, "user", "", "user[:group] the image runs as (default root)")
	fs.StringVar(&s.WorkingDir, "workdir", "", "working directory")
	fs.Var((*listFlag)(&s.Entrypoint), "entrypoint", "one entrypoint argument (repeat, in order)")
	fs.Var((*listFlag)(&s.Cmd), "cmd", "one cmd argument (repeat, in order)")
	fs.Var((*listFlag)(&s.Env), "env", "K=V environment variable (repeat); PATH defaults to "+defaultPath)
	fs.Var((*listFlag)(&s.Files), "file", "DST=SRC: copy host file SRC to absolute path DST in the image (repeat)")
	fs.Var((*listFlag)(&s.Dirs), "dir", "DST:MODE: an empty directory with octal MODE, e.g. /tmp:1777 (repeat)")
	if err := fs.Parse(args); err != nil {
		return s, err
	}
	if fs.NArg() > 0 {
		return s, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if s.Tag == "" || s.Out == "" {
		return s, errors.New("-tag and -out are required")
	}
	return s, nil
}

// build writes the image of s to s.Out and returns its digest.
func build(s spec) (v1.Hash, error) {
	tag, err := name.NewTag(s.Tag, name.StrictValidation)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("bad -tag %q: %w", s.Tag, err)
	}
	env, err := environment(s.Env)
	if err != nil {
		return v1.Hash{}, err
	}
	entries, err := layerEntries(s.Files, s.Dirs)
	if err != nil {
		return v1.Hash{}, err
	}
	layerTar, err := writeLayerTar(entries)
	if err != nil {
		return v1.Hash{}, err
	}
	img, err := image(layerTar, v1.Config{
		Entrypoint: s.Entrypoint,
		Cmd:        s.Cmd,
		User:       s.User,
		Env:        env,
		WorkingDir: s.WorkingDir,
	})
	if err != nil {
		return v1.Hash{}, err
	}
	digest, err := img.Digest()
	if err != nil {
		return v1.Hash{}, fmt.Errorf("image digest: %w", err)
	}
	return digest, writeArchive(s.Out, tag, img)
}

// environment validates K=V pairs and puts the default PATH first unless one is given.
func environment(kvs []string) ([]string, error) {
	env := []string{}
	hasPath := false
	for _, kv := range kvs {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("bad -env %q: want KEY=VALUE", kv)
		}
		hasPath = hasPath || k == "PATH"
		env = append(env, kv)
	}
	if !hasPath {
		env = append([]string{defaultPath}, env...)
	}
	return env, nil
}

// entry is one layer member: a directory when src is empty, else the host file src.
type entry struct {
	name string // clean, relative to the image root, no trailing slash
	mode int64  // tar mode bits, including setuid/setgid/sticky
	src  string
	size int64
	// implicit marks a parent directory that no -dir named; an explicit -dir overrides its mode.
	implicit bool
}

// layerEntries resolves -file and -dir into the layer's members, parents included, sorted by name so that a
// directory always precedes what it holds.
func layerEntries(files, dirs []string) ([]entry, error) {
	byName := map[string]entry{}
	for _, f := range files {
		e, err := fileEntry(f)
		if err != nil {
			return nil, err
		}
		if err := add(byName, e); err != nil {
			return nil, err
		}
	}
	for _, d := range dirs {
		e, err := dirEntry(d)
		if err != nil {
			return nil, err
		}
		if err := add(byName, e); err != nil {
			return nil, err
		}
	}
	entries := make([]entry, 0, len(byName))
	for _, e := range byName {
		entries = append(entries, e)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	return entries, nil
}

// add puts e and its missing parent directories into byName, refusing two members at one path.
func add(byName map[string]entry, e entry) error {
	if old, ok := byName[e.name]; ok {
		if !old.implicit || e.src != "" {
			return fmt.Errorf("/%s given twice, or both as a file and as a directory", e.name)
		}
	}
	byName[e.name] = e
	for p := path.Dir(e.name); p != "."; p = path.Dir(p) {
		old, ok := byName[p]
		if ok && old.src != "" {
			return fmt.Errorf("/%s is a file and also the parent of /%s", p, e.name)
		}
		if !ok {
			byName[p] = entry{name: p, mode: 0o755, implicit: true}
		}
	}
	return nil
}

// imagePath checks that dst is an absolute path below / and returns it relative to the root.
func imagePath(flagName, arg, dst string) (string, error) {
	if !path.IsAbs(dst) || path.Clean(dst) == "/" {
		return "", fmt.Errorf("bad %s %q: %q is not an absolute path below /", flagName, arg, dst)
	}
	return strings.TrimPrefix(path.Clean(dst), "/"), nil
}

func fileEntry(arg string) (entry, error) {
	dst, src, ok := strings.Cut(arg, "=")
	if !ok || src == "" {
		return entry{}, fmt.Errorf("bad -file %q: want /DST/IN/IMAGE=/SRC/ON/HOST", arg)
	}
	rel, err := imagePath("-file", arg, dst)
	if err != nil {
		return entry{}, err
	}
	fi, err := os.Stat(src)
	if err != nil {
		return entry{}, fmt.Errorf("source of -file %s: %w", dst, err)
	}
	if !fi.Mode().IsRegular() {
		return entry{}, fmt.Errorf("source of -file %s: %s is not a regular file", dst, src)
	}
	return entry{name: rel, mode: tarMode(fi.Mode()), src: src, size: fi.Size()}, nil
}

func dirEntry(arg string) (entry, error) {
	dst, modeStr, ok := strings.Cut(arg, ":")
	if !ok {
		return entry{}, fmt.Errorf("bad -dir %q: want /DST:MODE, e.g. /tmp:1777", arg)
	}
	mode, err := strconv.ParseInt(modeStr, 8, 64)
	if err != nil || mode < 0 || mode > 0o7777 {
		return entry{}, fmt.Errorf("bad -dir %q: mode %q is not octal 0-7777", arg, modeStr)
	}
	rel, err := imagePath("-dir", arg, dst)
	if err != nil {
		return entry{}, err
	}
	return entry{name: rel, mode: mode}, nil
}

// tarMode turns a Go file mode into tar's mode bits (c_ISUID 04000, c_ISGID 02000, c_ISVTX 01000).
func tarMode(m os.FileMode) int64 {
	mode := int64(m.Perm())
	if m&os.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&os.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&os.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}

// writeLayerTar returns the uncompressed layer: every member owned by 0:0 with the epoch as mtime.
func writeLayerTar(entries []entry) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		if err := writeEntry(tw, e); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("closing the layer tar: %w", err)
	}
	return buf.Bytes(), nil
}

func writeEntry(tw *tar.Writer, e entry) error {
	hdr := &tar.Header{Name: e.name, Mode: e.mode, ModTime: epoch, Typeflag: tar.TypeReg, Size: e.size}
	if e.src == "" {
		hdr.Name, hdr.Typeflag, hdr.Size = e.name+"/", tar.TypeDir, 0
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("layer entry /%s: %w", e.name, err)
	}
	if e.src == "" {
		return nil
	}
	f, err := os.Open(e.src)
	if err != nil {
		return fmt.Errorf("layer entry /%s: %w", e.name, err)
	}
	defer func() { _ = f.Close() }()
	// CopyN: a file that changed size since the Stat must fail here, not write a corrupt member.
	if _, err := io.CopyN(tw, f, e.size); err != nil {
		return fmt.Errorf("layer entry /%s from %s: %w", e.name, e.src, err)
	}
	return nil
}

// image is empty.Image plus the one layer and a linux config for this machine's architecture.
func image(layerTar []byte, cfg v1.Config) (v1.Image, error) {
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithCompressedCaching) // else the layer is gzipped once for its digest and again when written
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{
		Layer:   layer,
		History: v1.History{CreatedBy: "imagebuild", Created: v1.Time{Time: epoch}},
	})
	if err != nil {
		return nil, fmt.Errorf("appending the layer: %w", err)
	}
	base, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	cf := base.DeepCopy()
	cf.OS, cf.Architecture, cf.Created, cf.Config = "linux", runtime.GOARCH, v1.Time{Time: epoch}, cfg
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("setting the config: %w", err)
	}
	return img, nil
}

// writeArchive writes img as a docker-archive at out, through a temporary file so that a reader never sees
// half an archive.
func writeArchive(out string, tag name.Tag, img v1.Image) error {
	tmp := out + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("renaming %s: %w", tmp, err)
	}
	return nil
}
