// Package downloads serves what a host outside the cluster needs to join a ManagedCollector, on the operator's
// one listener next to /v1/opamp: the installer script (the product document's Option A), the pre-filled
// supervisor.yaml for an EnrollmentToken (Option B), and, for air-gapped sites, a mirror of the upstream
// opampsupervisor and otelcol-contrib release files.
package downloads

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"regexp"
	"strings"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/credential"
	"github.com/linkmesh/linkmesh-operator/internal/endpoint"
	"github.com/linkmesh/linkmesh-operator/internal/manifests"
)

// Paths served, all under Prefix.
const (
	// Prefix is where the Handler is mounted on the listener.
	Prefix = "/api/v1/downloads/"
	// ScriptPath is the installer, install-opamp.sh.
	ScriptPath = Prefix + "install-opamp.sh"
	// BootstrapConfigPath is a host's supervisor.yaml for the EnrollmentToken it presents.
	BootstrapConfigPath = Prefix + "opamp-bootstrap-config.yaml"
	// MirrorPath serves the files of the mirror directory.
	MirrorPath = Prefix + "bin/"
)

// RejectedMessage is the body of a 401, and what the installer prints for it.
const RejectedMessage = "token is wrong, expired or already used: mint a new EnrollmentToken"

// serverPlaceholder is replaced by the URL the script is served from.
const serverPlaceholder = "@LINKMESH_SERVER@"

//go:embed install-opamp.sh
var script string

// Script is the installer as served from base, an http(s) URL without a trailing slash.
func Script(base string) string { return strings.Replace(script, serverPlaceholder, base, 1) }

// TokenPlaceholder is where an InstallCommand's EnrollmentToken goes.
const TokenPlaceholder = "<TOKEN>"

// installCommandPrefix and installCommandSuffix frame an InstallCommand's server URL.
const (
	installCommandPrefix = "curl -fsSL "
	installCommandSuffix = ScriptPath + " | sudo sh -s -- --token " + TokenPlaceholder
)

// InstallCommand is the one-line install of the product document for a server at base, with TokenPlaceholder
// where the EnrollmentToken goes.
func InstallCommand(base string) string {
	return installCommandPrefix + strings.TrimSuffix(base, "/") + installCommandSuffix
}

// ServerOfInstallCommand is the server URL that InstallCommand made command for.
func ServerOfInstallCommand(command string) (string, error) {
	rest, ok := strings.CutPrefix(command, installCommandPrefix)
	if ok {
		rest, ok = strings.CutSuffix(rest, installCommandSuffix)
	}
	if !ok || (!strings.HasPrefix(rest, "http://") && !strings.HasPrefix(rest, "https://")) || strings.ContainsAny(rest, " '\"|;&$`") {
		return "", fmt.Errorf("%q is not an install command of this LinkMesh version (%s)", command, InstallCommand("SERVER"))
	}
	return rest, nil
}

// CheckEnvironment says why environment cannot be a host's linkmesh.environment, as the installer's
// --environment and the bootstrap config's environment parameter accept it; nil if it can.
func CheckEnvironment(environment string) error {
	if !environmentRE.MatchString(environment) {
		return errors.New("environment may only contain letters, digits, '.', '_' and '-', up to 128 of them")
	}
	return nil
}

// TokenChecker checks an EnrollmentToken without redeeming it; *credential.Authority is one.
type TokenChecker interface {
	CheckHost(ctx context.Context, token, instanceUID string) (*credential.Principal, *v1alpha1.ManagedCollector, error)
}

// Options configure a Handler.
type Options struct {
	// Tokens decides which EnrollmentTokens get a supervisor.yaml.
	Tokens TokenChecker
	// MirrorDir (--mirror-dir) holds upstream release files, named as upstream names them, with .sha256
	// files beside them. Empty: no mirror, and installers download from GitHub.
	MirrorDir string
	// Logger defaults to the controller-runtime logger named "downloads".
	Logger logr.Logger
}

// Handler serves everything under Prefix.
type Handler struct {
	tokens    TokenChecker
	mirrorDir string
	log       logr.Logger
	mux       *http.ServeMux
}

// New returns the Handler; mount it at Prefix.
func New(o Options) (*Handler, error) {
	if o.Tokens == nil {
		return nil, errors.New("downloads: Tokens is required")
	}
	if o.Logger.GetSink() == nil {
		o.Logger = ctrl.Log.WithName("downloads")
	}
	h := &Handler{tokens: o.Tokens, mirrorDir: o.MirrorDir, log: o.Logger, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET "+ScriptPath, h.serveScript)
	h.mux.HandleFunc("GET "+BootstrapConfigPath, h.serveBootstrapConfig)
	h.mux.HandleFunc("GET "+MirrorPath+"{file}", h.serveMirror)
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *Handler) serveScript(w http.ResponseWriter, r *http.Request) {
	base, err := baseURL(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/x-shellscript; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write([]byte(Script(base)))
}

var (
	// environmentRE is what the installer's --environment accepts.
	environmentRE = regexp.MustCompile(`^[A-Za-z0-9._-]{0,128}$`)
	// instanceUIDRE is an OpAMP instance UID as the supervisor writes it, a UUID.
	instanceUIDRE = regexp.MustCompile(`^[0-9A-Fa-f-]{0,64}$`)
)

// SupervisorVersionParam is the query parameter of BootstrapConfigPath that names the opampsupervisor
// release the host runs; the file holds the keys that release accepts. Without it the file is for
// manifests.DefaultHostSupervisorVersion, what the installer installs by default.
const SupervisorVersionParam = "supervisor_version"

// serveBootstrapConfig renders supervisor.yaml for the EnrollmentToken the caller presents, as
// "Authorization: Bearer" (preferred: query strings end up in access logs) or ?token=. environment sets
// linkmesh.environment; instance_uid lets the host that redeemed the token fetch it again;
// supervisor_version picks the keys. Bad parameters get 400 before the token is looked at.
func (h *Handler) serveBootstrapConfig(w http.ResponseWriter, r *http.Request) {
	base, err := baseURL(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	q := r.URL.Query()
	environment, instanceUID := q.Get("environment"), q.Get("instance_uid")
	if err := CheckEnvironment(environment); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if !instanceUIDRE.MatchString(instanceUID) {
		http.Error(w, "instance_uid is not an instance UID", http.StatusBadRequest)
		return
	}
	supervisorVersion := manifests.DefaultHostSupervisorVersion
	if q.Has(SupervisorVersionParam) {
		supervisorVersion = q.Get(SupervisorVersionParam)
	}
	if _, err := manifests.ParseSupervisorVersion(supervisorVersion); err != nil {
		http.Error(w, SupervisorVersionParam+": "+err.Error(), http.StatusBadRequest)
		return
	}
	token, ok := presentedToken(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="linkmesh"`)
		http.Error(w, RejectedMessage, http.StatusUnauthorized)
		return
	}
	enrollment, collector, err := h.tokens.CheckHost(r.Context(), token, strings.ToLower(instanceUID))
	if errors.Is(err, credential.ErrUnauthorized) {
		h.log.Info("Refused a bootstrap config", "credential", credential.Fingerprint(token), "remote", r.RemoteAddr)
		w.Header().Set("WWW-Authenticate", `Bearer realm="linkmesh"`)
		http.Error(w, RejectedMessage, http.StatusUnauthorized)
		return
	}
	if err != nil {
		h.log.Error(err, "Checking an enrollment token", "credential", credential.Fingerprint(token))
		http.Error(w, "cannot check the token now: try again", http.StatusServiceUnavailable)
		return
	}
	opampURL, err := endpoint.OpAMP(base)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	out, err := manifests.HostSupervisorYAML(collector, opampURL, token, environment, supervisorVersion)
	if err != nil {
		h.log.Error(err, "Rendering a bootstrap config", "enrollmentToken", enrollment.Token.String())
		http.Error(w, "cannot render supervisor.yaml", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/yaml; charset=utf-8")
	// It holds the token.
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(out)
}

// presentedToken is the bearer token of the Authorization header, else the token query parameter.
func presentedToken(r *http.Request) (string, bool) {
	if len(r.Header.Values("Authorization")) > 0 {
		return credential.Bearer(r)
	}
	token := r.URL.Query().Get("token")
	return token, token != "" && len(token) <= credential.MaxTokenLen
}

// mirrorFileRE is the upstream release files the mirror serves, and their checksums.
var mirrorFileRE = regexp.MustCompile(
	`^(otelcol-contrib_[0-9A-Za-z.+~-]+_linux_(amd64|arm64)\.tar\.gz|opampsupervisor_[0-9A-Za-z.+~-]+_linux_(amd64|arm64))(\.sha256)?$`)

func (h *Handler) serveMirror(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	if h.mirrorDir == "" {
		http.Error(w, "this server has no mirror (--mirror-dir): download from the upstream releases", http.StatusNotFound)
		return
	}
	if !mirrorFileRE.MatchString(name) {
		http.NotFound(w, r)
		return
	}
	// os.Root keeps symlinks in the mirror from reaching outside it.
	root, err := os.OpenRoot(h.mirrorDir)
	if err != nil {
		h.log.Error(err, "Opening the mirror directory", "dir", h.mirrorDir)
		http.Error(w, "the mirror directory cannot be read", http.StatusInternalServerError)
		return
	}
	defer func() { _ = root.Close() }()
	f, err := root.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		http.Error(w, fmt.Sprintf("the mirror has no %s", name), http.StatusNotFound)
		return
	}
	if err != nil {
		// For example a symlink that leads out of the mirror.
		h.log.Info("Refused a mirror file", "file", name, "reason", err.Error())
		http.NotFound(w, r)
		return
	}
	defer func() { _ = f.Close() }()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	ctype := "application/octet-stream"
	if strings.HasSuffix(name, ".sha256") {
		ctype = "text/plain; charset=utf-8"
	}
	w.Header().Set("Content-Type", ctype)
	http.ServeContent(w, r, name, st.ModTime(), f)
}

// hostRE is a host[:port] fit to be written into a script and a YAML file unquoted.
var hostRE = regexp.MustCompile(`^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$`)

// baseURL is the URL the request was made to, as its client sees it: behind a TLS-terminating proxy
// X-Forwarded-Proto and X-Forwarded-Host say so. The answer goes to that client only, so it cannot be used
// against anyone else.
func baseURL(r *http.Request) (string, error) {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := strings.ToLower(firstValue(r.Header.Get("X-Forwarded-Proto"))); p == "http" || p == "https" {
		scheme = p
	}
	host := r.Host
	if fh := firstValue(r.Header.Get("X-Forwarded-Host")); fh != "" {
		host = fh
	}
	if !hostRE.MatchString(host) {
		return "", fmt.Errorf("the request's host %q is not a host name or address", host)
	}
	return scheme + "://" + host, nil
}

func firstValue(v string) string {
	first, _, _ := strings.Cut(v, ",")
	return strings.TrimSpace(first)
}
