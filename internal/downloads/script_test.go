package downloads

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/linkmesh/linkmesh-operator/test/framework/supervisoryaml"
)

// The served installer, run for real under dash against the Handler on 127.0.0.1 with a fake token check and
// a mirror of stand-in binaries. test/e2e runs it against the operator with the real supervisor.

const (
	testSupervisor = "opampsupervisor_0.135.0_linux_amd64"
	testCollector  = "otelcol-contrib_0.153.0_linux_amd64.tar.gz"
)

func needDash(t *testing.T) string {
	t.Helper()
	dash, err := exec.LookPath("dash")
	if err != nil {
		t.Fatal("dash is needed to run the installer as Debian's /bin/sh does (apt-get install dash)")
	}
	return dash
}

// stageMirror writes a mirror of stand-in files, as hack/stage-mirror.sh writes the real ones.
func stageMirror(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	var tgz bytes.Buffer
	gz := gzip.NewWriter(&tgz)
	tw := tar.NewWriter(gz)
	body := []byte("#!/bin/sh\necho collector\n")
	if err := tw.WriteHeader(&tar.Header{Name: "otelcol-contrib", Mode: 0o755, Size: int64(len(body))}); err != nil {
		t.Fatal(err)
	}
	_, _ = tw.Write(body)
	_ = tw.Close()
	_ = gz.Close()
	files := map[string][]byte{testCollector: tgz.Bytes(), testSupervisor: []byte("#!/bin/sh\necho supervisor\n")}
	for name, content := range files {
		sum := sha256.Sum256(content)
		writeFile(t, filepath.Join(dir, name), string(content))
		writeFile(t, filepath.Join(dir, name+".sha256"), hex.EncodeToString(sum[:])+"  "+name+"\n")
	}
	return dir
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

type install struct {
	root, tmp string
	out       string
	err       error
}

// runScript fetches the script from srv like `curl | sh` would and runs it under dash with args.
func runScript(t *testing.T, srvURL, root string, env []string, args ...string) install {
	t.Helper()
	tmp := t.TempDir()
	script, err := httpGet(srvURL + ScriptPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(needDash(t), append([]string{"-s", "--", "--root", root}, args...)...)
	cmd.Stdin = strings.NewReader(script)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "TMPDIR=" + tmp}, env...)
	out, err := cmd.CombinedOutput()
	return install{root: root, tmp: tmp, out: string(out), err: err}
}

func httpGet(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), err
}

// files lists what is under dir, with modes.
func files(t *testing.T, dir string) map[string]fs.FileMode {
	t.Helper()
	out := map[string]fs.FileMode{}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = info.Mode()
		return nil
	})
	return out
}

func TestInstallerUnderDash(t *testing.T) {
	tokens := &fakeTokens{}
	srv := httptest.NewServer(newHandler(t, tokens, stageMirror(t)))
	defer srv.Close()
	root := filepath.Join(t.TempDir(), "root")

	run := runScript(t, srv.URL, root, nil, "--token", goodToken, "--mirror", "--no-start", "--arch", "amd64", "--environment", "production")
	if run.err != nil {
		t.Fatalf("install failed: %v\n%s", run.err, run.out)
	}
	want := map[string]fs.FileMode{
		"usr/local/bin/opampsupervisor":               0o755,
		"usr/local/bin/otelcol-contrib":               0o755,
		"etc/otelcol-supervisor/supervisor.yaml":      0o600,
		"etc/systemd/system/opamp-supervisor.service": 0o644,
		"etc/otelcol-supervisor":                      fs.ModeDir | 0o700,
		"var/lib/otelcol-supervisor":                  fs.ModeDir | 0o700,
		"usr/local/bin":                               fs.ModeDir | 0o755,
		"etc/systemd/system":                          fs.ModeDir | 0o755,
		"usr":                                         fs.ModeDir | 0o755,
		"usr/local":                                   fs.ModeDir | 0o755,
		"etc":                                         fs.ModeDir | 0o755,
		"etc/systemd":                                 fs.ModeDir | 0o755,
		"var":                                         fs.ModeDir | 0o755,
		"var/lib":                                     fs.ModeDir | 0o755,
	}
	got := files(t, root)
	for name, mode := range want {
		if got[name] != mode {
			t.Errorf("%s: mode %v, want %v", name, got[name], mode)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("unexpected file %s", name)
		}
	}
	unit, _ := os.ReadFile(filepath.Join(root, "etc/systemd/system/opamp-supervisor.service"))
	for _, line := range []string{
		"ExecStart=/usr/local/bin/opampsupervisor --config /etc/otelcol-supervisor/supervisor.yaml",
		"KillSignal=SIGINT", "Restart=always", "WantedBy=multi-user.target",
	} {
		if !strings.Contains(string(unit), "\n"+line+"\n") {
			t.Errorf("the unit has no line %q:\n%s", line, unit)
		}
	}
	b, _ := os.ReadFile(filepath.Join(root, "etc/otelcol-supervisor/supervisor.yaml"))
	cfg, err := supervisoryaml.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.Endpoint != "ws://"+srv.Listener.Addr().String()+"/v1/opamp" || cfg.Server.Headers["Authorization"] != "Bearer "+goodToken ||
		cfg.Agent.Description.NonIdentifyingAttributes["linkmesh.environment"] != "production" {
		t.Errorf("supervisor.yaml:\n%s", b)
	}
	// The file is for the supervisor the script installed, 0.135.0 by default: reports_remote_config is
	// written, validate_config (after 0.135.0) is not.
	if _, ok := cfg.Capabilities["reports_remote_config"]; !ok || cfg.Agent.ValidateConfig {
		t.Errorf("supervisor.yaml is not the one for supervisor 0.135.0:\n%s", b)
	}
	if s, _ := os.ReadFile(filepath.Join(root, "usr/local/bin/otelcol-contrib")); !strings.Contains(string(s), "echo collector") {
		t.Errorf("otelcol-contrib is not the tarball's: %q", s)
	}
	if left := files(t, run.tmp); len(left) != 0 {
		t.Errorf("the script left temporary files: %v", left)
	}

	// Again, after the supervisor has redeemed the token and written its instance UID: the host presents it
	// and may fetch its config again. Without --mirror: the server has the files, so they come from it.
	writeFile(t, filepath.Join(root, "var/lib/otelcol-supervisor/persistent_state.yaml"), "instance_id: "+redeemer+"\n")
	again := runScript(t, srv.URL, root, []string{"LINKMESH_TOKEN=" + goodToken}, "--no-start", "--arch", "amd64")
	if again.err != nil {
		t.Fatalf("the second run failed: %v\n%s", again.err, again.out)
	}
	if tokens.gotUID != redeemer || !strings.Contains(again.out, "from the server's mirror") {
		t.Errorf("second run: instance UID %q presented; output:\n%s", tokens.gotUID, again.out)
	}
	if got2 := files(t, root); len(got2) != len(got)+1 {
		t.Errorf("the second run changed the set of files: %v", got2)
	}
}

func TestInstallerFailsCleanly(t *testing.T) {
	mirror := stageMirror(t)
	srv := httptest.NewServer(newHandler(t, &fakeTokens{}, mirror))
	defer srv.Close()

	missing := stageMirror(t)
	_ = os.Remove(filepath.Join(missing, testCollector))
	missingSrv := httptest.NewServer(newHandler(t, &fakeTokens{}, missing))
	defer missingSrv.Close()

	corrupt := stageMirror(t)
	writeFile(t, filepath.Join(corrupt, testSupervisor), "#!/bin/sh\necho tampered\n")
	corruptSrv := httptest.NewServer(newHandler(t, &fakeTokens{}, corrupt))
	defer corruptSrv.Close()

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unreachable := "http://" + closed.Addr().String()
	_ = closed.Close()

	// A PATH where id says "not root", and one without curl or wget.
	notRoot := t.TempDir()
	writeFile(t, filepath.Join(notRoot, "id"), "#!/bin/sh\necho 1000\n")
	_ = os.Chmod(filepath.Join(notRoot, "id"), 0o755)
	noFetcher := t.TempDir()
	for _, tool := range []string{"grep", "uname", "id"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(p, filepath.Join(noFetcher, tool)); err != nil {
			t.Fatal(err)
		}
	}

	cases := []struct {
		name string
		srv  string
		env  []string
		args []string
		want string
	}{
		{name: "no token", srv: srv.URL, args: []string{"--mirror"}, want: "no token: pass --token <TOKEN> or set LINKMESH_TOKEN"},
		{name: "wrong token", srv: srv.URL, args: []string{"--token", "lme_wrong"}, want: RejectedMessage},
		{name: "another host's token", srv: srv.URL, args: []string{"--token", goodToken},
			env: nil, want: RejectedMessage},
		{name: "unreachable server", srv: srv.URL, args: []string{"--token", goodToken, "--server", unreachable},
			want: "cannot reach the LinkMesh server at " + unreachable},
		{name: "unknown arch", srv: srv.URL, args: []string{"--token", goodToken, "--arch", "mips"}, want: "unsupported architecture 'mips'"},
		{name: "mirror missing a file", srv: missingSrv.URL, args: []string{"--token", goodToken, "--mirror"},
			want: "the server's mirror has no " + testCollector},
		{name: "checksum mismatch", srv: corruptSrv.URL, args: []string{"--token", goodToken, "--mirror"},
			want: "checksum mismatch for " + testSupervisor},
		{name: "unknown option", srv: srv.URL, args: []string{"--token", goodToken, "--frobnicate"}, want: "unknown option --frobnicate"},
		{name: "no curl or wget", srv: srv.URL, env: []string{"PATH=" + noFetcher}, args: []string{"--token", goodToken},
			want: "neither curl nor wget is installed"},
		{name: "supervisor older than the server renders for", srv: srv.URL, args: []string{"--token", goodToken, "--supervisor-version", "0.120.0"},
			want: "the LinkMesh server at " + srv.URL + " refused the request: supervisor_version: supervisor version 0.120.0 is older than 0.135.0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "root")
			if c.name == "another host's token" {
				// This host's storage names an instance other than the one that redeemed the token.
				if err := os.MkdirAll(filepath.Join(root, "var/lib/otelcol-supervisor"), 0o700); err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(root, "var/lib/otelcol-supervisor/persistent_state.yaml"),
					"instance_id: \"0190aaaa-0000-7000-8000-0000000000ff\"\n")
			}
			before := files(t, root)
			run := runScript(t, c.srv, root, c.env, append(c.args, "--no-start")...)
			if run.err == nil {
				t.Fatalf("the script succeeded:\n%s", run.out)
			}
			t.Logf("%v:\n%s", run.err, run.out)
			if !strings.Contains(run.out, c.want) {
				t.Errorf("output does not say %q:\n%s", c.want, run.out)
			}
			if after := files(t, root); len(after) != len(before) {
				t.Errorf("the failed run left files behind: %v", after)
			}
			if left := files(t, run.tmp); len(left) != 0 {
				t.Errorf("the script left temporary files: %v", left)
			}
		})
	}

	t.Run("not root", func(t *testing.T) {
		script, err := httpGet(srv.URL + ScriptPath)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(needDash(t), "-s", "--", "--token", goodToken)
		cmd.Stdin = strings.NewReader(script)
		cmd.Env = []string{"PATH=" + notRoot + ":" + os.Getenv("PATH")}
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "must run as root") {
			t.Errorf("err %v, output:\n%s", err, out)
		}
	})
}

// TestShellcheck: the installer as served passes shellcheck, as it is in the tree (make lint checks that).
func TestShellcheck(t *testing.T) {
	sc, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Skip("shellcheck is not installed (apt-get install shellcheck); make lint runs it")
	}
	p := filepath.Join(t.TempDir(), "install-opamp.sh")
	writeFile(t, p, Script("https://linkmesh.example.com"))
	if out, err := exec.Command(sc, "--shell=sh", p).CombinedOutput(); err != nil {
		t.Errorf("shellcheck: %v\n%s", err, out)
	}
}

// TestInstallerWithWget: a host with wget and no curl installs the same files.
func TestInstallerWithWget(t *testing.T) {
	bin := t.TempDir()
	for _, tool := range []string{"wget", "grep", "uname", "id", "mktemp", "rm", "awk", "cut", "sha256sum", "tail", "sed",
		"mkdir", "tar", "gzip", "cat", "cp", "chmod", "mv", "dirname", "basename"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatalf("%s: %v", tool, err)
		}
		if err := os.Symlink(p, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(newHandler(t, &fakeTokens{}, stageMirror(t)))
	defer srv.Close()
	root := filepath.Join(t.TempDir(), "root")
	run := runScript(t, srv.URL, root, []string{"PATH=" + bin}, "--token", goodToken, "--no-start", "--arch", "amd64")
	if run.err != nil {
		t.Fatalf("install failed: %v\n%s", run.err, run.out)
	}
	got := files(t, root)
	for _, f := range []string{"usr/local/bin/opampsupervisor", "usr/local/bin/otelcol-contrib", "etc/otelcol-supervisor/supervisor.yaml"} {
		if _, ok := got[f]; !ok {
			t.Errorf("%s not installed:\n%s", f, run.out)
		}
	}
	bad := runScript(t, srv.URL, filepath.Join(t.TempDir(), "root"), []string{"PATH=" + bin}, "--token", "lme_wrong", "--no-start")
	if bad.err == nil || !strings.Contains(bad.out, RejectedMessage) {
		t.Errorf("a wrong token with wget: %v\n%s", bad.err, bad.out)
	}
}
