package downloads

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/credential"
	"github.com/linkmesh/linkmesh-operator/internal/manifests"
	"github.com/linkmesh/linkmesh-operator/test/framework/supervisoryaml"
)

const (
	goodToken = "lme_good-token"
	redeemer  = "0190aaaa-0000-7000-8000-00000000000a"
)

// fakeTokens admits goodToken, for a host that has not connected yet or for instance "redeemer".
type fakeTokens struct {
	err     error
	gotUID  string
	checked int
}

func (f *fakeTokens) CheckHost(_ context.Context, token, instanceUID string) (*credential.Principal, *v1alpha1.ManagedCollector, error) {
	f.checked++
	f.gotUID = instanceUID
	if f.err != nil {
		return nil, nil, f.err
	}
	if token != goodToken || (instanceUID != "" && instanceUID != redeemer) {
		return nil, nil, credential.ErrUnauthorized
	}
	p := &credential.Principal{Membership: credential.Membership{
		Collector: types.NamespacedName{Namespace: "ns", Name: "hosts"},
		Source:    credential.SourceHost,
		Token:     types.NamespacedName{Namespace: "ns", Name: "web-01"},
	}}
	return p, f.collector(), nil
}

// collector is the ManagedCollector goodToken joins.
func (f *fakeTokens) collector() *v1alpha1.ManagedCollector {
	return &v1alpha1.ManagedCollector{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "hosts"},
		Spec: v1alpha1.ManagedCollectorSpec{Supervisor: v1alpha1.SupervisorSpec{
			NonIdentifyingAttributes: map[string]string{"team": "edge"},
		}},
	}
}

func newHandler(t *testing.T, tokens TokenChecker, mirrorDir string) *Handler {
	t.Helper()
	h, err := New(Options{Tokens: tokens, MirrorDir: mirrorDir})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func get(h http.Handler, target string, header http.Header, tlsOn bool) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	r.Host = "linkmesh.example.com:4320"
	for k, v := range header {
		r.Header[k] = v
	}
	if tlsOn {
		r.TLS = &tls.ConnectionState{}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestScriptHasTheServerItWasServedFrom(t *testing.T) {
	h := newHandler(t, &fakeTokens{}, "")
	cases := []struct {
		name   string
		header http.Header
		tls    bool
		want   string
	}{
		{name: "plain", want: "http://linkmesh.example.com:4320"},
		{name: "tls", tls: true, want: "https://linkmesh.example.com:4320"},
		{name: "behind a TLS proxy", header: http.Header{"X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"opamp.example.com"}},
			want: "https://opamp.example.com"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := get(h, ScriptPath, c.header, c.tls)
			if w.Code != http.StatusOK {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			if !strings.Contains(w.Body.String(), "\nLINKMESH_SERVER='"+c.want+"'\n") {
				t.Errorf("the script does not default --server to %s", c.want)
			}
			if strings.Contains(w.Body.String(), serverPlaceholder) {
				t.Error("the placeholder is left in the script")
			}
		})
	}
	// A host header that could break out of the script's quotes is refused.
	w := get(h, ScriptPath, http.Header{"X-Forwarded-Host": {"x';rm -rf /;'"}}, false)
	if w.Code != http.StatusBadRequest {
		t.Errorf("a hostile host: status %d, want 400", w.Code)
	}
}

func TestBootstrapConfig(t *testing.T) {
	bearer := http.Header{"Authorization": {"Bearer " + goodToken}}
	cases := []struct {
		name         string
		target       string
		header       http.Header
		tls          bool
		tokensErr    error
		wantCode     int
		wantEndpoint string
		wantEnv      string
		// wantVersion is the supervisor version the file is for; empty for the installer's default.
		wantVersion string
		// wantBody is in the body of an error.
		wantBody string
		// wantNoReportsRemoteConfig: the version implies the capability, and the key is left out.
		wantNoReportsRemoteConfig bool
	}{
		{name: "bearer", target: BootstrapConfigPath, header: bearer, wantCode: 200, wantEndpoint: "ws://linkmesh.example.com:4320/v1/opamp"},
		{name: "tls gives wss", target: BootstrapConfigPath, header: bearer, tls: true, wantCode: 200,
			wantEndpoint: "wss://linkmesh.example.com:4320/v1/opamp"},
		{name: "query token and environment", target: BootstrapConfigPath + "?token=" + goodToken + "&environment=production",
			wantCode: 200, wantEndpoint: "ws://linkmesh.example.com:4320/v1/opamp", wantEnv: "production"},
		{name: "the redeeming instance", target: BootstrapConfigPath + "?instance_uid=" + redeemer, header: bearer, wantCode: 200,
			wantEndpoint: "ws://linkmesh.example.com:4320/v1/opamp"},
		{name: "another instance", target: BootstrapConfigPath + "?instance_uid=0190aaaa-0000-7000-8000-000000000001", header: bearer, wantCode: 401},
		{name: "no token", target: BootstrapConfigPath, wantCode: 401},
		{name: "wrong token", target: BootstrapConfigPath, header: http.Header{"Authorization": {"Bearer lme_wrong"}}, wantCode: 401},
		{name: "not bearer", target: BootstrapConfigPath, header: http.Header{"Authorization": {"Basic " + goodToken}}, wantCode: 401},
		{name: "bad environment", target: BootstrapConfigPath + "?environment=a%0Ab", header: bearer, wantCode: 400,
			wantBody: "environment may only contain letters, digits"},
		{name: "supervisor 0.149.0", target: BootstrapConfigPath + "?supervisor_version=0.149.0", header: bearer, wantCode: 200,
			wantEndpoint: "ws://linkmesh.example.com:4320/v1/opamp", wantVersion: "0.149.0"},
		{name: "supervisor 0.161.0", target: BootstrapConfigPath + "?supervisor_version=0.161.0", header: bearer, wantCode: 200,
			wantEndpoint: "ws://linkmesh.example.com:4320/v1/opamp", wantVersion: "0.161.0", wantNoReportsRemoteConfig: true},
		{name: "supervisor version not a version", target: BootstrapConfigPath + "?supervisor_version=latest", header: bearer, wantCode: 400,
			wantBody: `supervisor_version: supervisor version "latest" is not a release version such as 0.149.0`},
		{name: "supervisor version empty", target: BootstrapConfigPath + "?supervisor_version=", header: bearer, wantCode: 400,
			wantBody: `supervisor_version: supervisor version "" is not a release version`},
		{name: "supervisor too old", target: BootstrapConfigPath + "?supervisor_version=0.120.0", header: bearer, wantCode: 400,
			wantBody: "supervisor_version: supervisor version 0.120.0 is older than 0.135.0"},
		{name: "bad supervisor version and no token", target: BootstrapConfigPath + "?supervisor_version=0.1", wantCode: 400,
			wantBody: "is not a release version"},
		{name: "cache unavailable", target: BootstrapConfigPath, header: bearer, tokensErr: errors.New("cache not synced"), wantCode: 503},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tokens := &fakeTokens{err: c.tokensErr}
			h := newHandler(t, tokens, "")
			w := get(h, c.target, c.header, c.tls)
			if w.Code != c.wantCode {
				t.Fatalf("status %d, want %d: %s", w.Code, c.wantCode, w.Body)
			}
			if !strings.Contains(w.Body.String(), c.wantBody) {
				t.Errorf("body %q does not say %q", w.Body, c.wantBody)
			}
			if c.wantCode == http.StatusBadRequest && tokens.checked != 0 {
				t.Errorf("a bad request had its token checked")
			}
			if c.wantCode == http.StatusUnauthorized {
				if strings.TrimSpace(w.Body.String()) != RejectedMessage {
					t.Errorf("body %q, want %q", w.Body, RejectedMessage)
				}
				return
			}
			if c.wantCode != http.StatusOK {
				return
			}
			if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q: a response with a token must not be stored", cc)
			}
			f, err := supervisoryaml.Parse(w.Body.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			if f.Server.Endpoint != c.wantEndpoint || f.Server.Headers["Authorization"] != "Bearer "+goodToken {
				t.Errorf("server: %+v", f.Server)
			}
			if v, ok := f.Capabilities["accepts_remote_config"]; !ok || !v {
				t.Errorf("capabilities.accepts_remote_config not written as true")
			}
			if _, ok := f.Capabilities["reports_remote_config"]; ok == c.wantNoReportsRemoteConfig {
				t.Errorf("capabilities.reports_remote_config written: %v, want %v", ok, !c.wantNoReportsRemoteConfig)
			}
			// The rules of internal/manifests for the version the host said, or the installer's default.
			want, err := manifests.HostSupervisorYAML(tokens.collector(), f.Server.Endpoint, goodToken, c.wantEnv, cmp.Or(c.wantVersion, manifests.DefaultHostSupervisorVersion))
			if err != nil {
				t.Fatal(err)
			}
			if w.Body.String() != string(want) {
				t.Errorf("the file is not the one for supervisor %s:\n%s", cmp.Or(c.wantVersion, manifests.DefaultHostSupervisorVersion), w.Body)
			}
			if f.Agent.Executable != "/usr/local/bin/otelcol-contrib" || f.Storage.Directory != "/var/lib/otelcol-supervisor" {
				t.Errorf("agent %+v, storage %+v", f.Agent, f.Storage)
			}
			if f.Agent.Description.NonIdentifyingAttributes["team"] != "edge" || f.Agent.Description.NonIdentifyingAttributes["linkmesh.environment"] != c.wantEnv {
				t.Errorf("attributes %v", f.Agent.Description.NonIdentifyingAttributes)
			}
		})
	}
}

func TestMirror(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	write := func(d, name, content string) {
		if err := os.WriteFile(filepath.Join(d, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(dir, "opampsupervisor_0.135.0_linux_amd64", "supervisor")
	write(dir, "opampsupervisor_0.135.0_linux_amd64.sha256", "abc  opampsupervisor_0.135.0_linux_amd64\n")
	write(dir, "notes.txt", "not a release file")
	write(outside, "opampsupervisor_0.135.0_linux_arm64", "outside")
	if err := os.Symlink(filepath.Join(outside, "opampsupervisor_0.135.0_linux_arm64"), filepath.Join(dir, "opampsupervisor_0.135.0_linux_arm64")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "otelcol-contrib_0.153.0_linux_amd64.tar.gz"), 0o755); err != nil {
		t.Fatal(err)
	}
	h := newHandler(t, &fakeTokens{}, dir)
	cases := []struct {
		file     string
		wantCode int
		wantBody string
	}{
		{file: "opampsupervisor_0.135.0_linux_amd64", wantCode: 200, wantBody: "supervisor"},
		{file: "opampsupervisor_0.135.0_linux_amd64.sha256", wantCode: 200, wantBody: "abc  opampsupervisor_0.135.0_linux_amd64\n"},
		{file: "otelcol-contrib_0.153.0_linux_arm64.tar.gz", wantCode: 404},
		{file: "notes.txt", wantCode: 404},
		{file: "opampsupervisor_0.135.0_linux_arm64", wantCode: 404},        // a symlink out of the mirror
		{file: "otelcol-contrib_0.153.0_linux_amd64.tar.gz", wantCode: 404}, // a directory
		{file: "..%2Fetc%2Fpasswd", wantCode: 404},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			w := get(h, MirrorPath+c.file, nil, false)
			if w.Code != c.wantCode {
				t.Fatalf("status %d, want %d: %s", w.Code, c.wantCode, w.Body)
			}
			if c.wantBody != "" && w.Body.String() != c.wantBody {
				t.Errorf("body %q, want %q", w.Body, c.wantBody)
			}
		})
	}

	noMirror := newHandler(t, &fakeTokens{}, "")
	if w := get(noMirror, MirrorPath+"opampsupervisor_0.135.0_linux_amd64", nil, false); w.Code != http.StatusNotFound {
		t.Errorf("without --mirror-dir: status %d, want 404", w.Code)
	}
}

// TestHEADServesNoBody: the installer probes the mirror with a download to /dev/null; HEAD works too.
func TestHEADServesNoBody(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "opampsupervisor_0.135.0_linux_amd64"), []byte("supervisor"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(newHandler(t, &fakeTokens{}, dir))
	defer srv.Close()
	resp, err := http.Head(srv.URL + MirrorPath + "opampsupervisor_0.135.0_linux_amd64")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(body) != 0 || resp.ContentLength != int64(len("supervisor")) {
		t.Errorf("HEAD: %s, %d bytes of body, Content-Length %d", resp.Status, len(body), resp.ContentLength)
	}
}

func TestInstallCommand(t *testing.T) {
	for _, base := range []string{"http://127.0.0.1:4320", "https://linkmesh.example.com", "https://linkmesh.example.com/"} {
		cmd := InstallCommand(base)
		if want := "curl -fsSL " + strings.TrimSuffix(base, "/") + "/api/v1/downloads/install-opamp.sh | sudo sh -s -- --token <TOKEN>"; cmd != want {
			t.Errorf("InstallCommand(%q) = %q, want %q", base, cmd, want)
		}
		got, err := ServerOfInstallCommand(cmd)
		if err != nil || got != strings.TrimSuffix(base, "/") {
			t.Errorf("ServerOfInstallCommand(%q) = %q, %v", cmd, got, err)
		}
	}
	for _, bad := range []string{
		"",
		"curl -fsSL http://x/api/v1/downloads/install-opamp.sh | sh",
		"wget http://x/api/v1/downloads/install-opamp.sh | sudo sh -s -- --token <TOKEN>",
		"curl -fsSL ftp://x/api/v1/downloads/install-opamp.sh | sudo sh -s -- --token <TOKEN>",
		"curl -fsSL http://x;rm -rf ~/api/v1/downloads/install-opamp.sh | sudo sh -s -- --token <TOKEN>",
	} {
		if got, err := ServerOfInstallCommand(bad); err == nil {
			t.Errorf("ServerOfInstallCommand(%q) = %q, want an error", bad, got)
		}
	}
}

// TestScriptDefaultSupervisorVersion: the installer installs by default the version a bootstrap config
// without a version is rendered for.
func TestScriptDefaultSupervisorVersion(t *testing.T) {
	if !strings.Contains(script, "\nsupervisor_version="+manifests.DefaultHostSupervisorVersion+"\n") {
		t.Errorf("install-opamp.sh does not default --supervisor-version to %s", manifests.DefaultHostSupervisorVersion)
	}
}
