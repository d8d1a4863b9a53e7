package cli_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/linkmesh/linkmesh-operator/internal/cli"
	"github.com/linkmesh/linkmesh-operator/internal/manifests"
	"github.com/linkmesh/linkmesh-operator/internal/operator"
	"github.com/linkmesh/linkmesh-operator/test/framework/testenv"
)

var (
	env *testenv.Env
	// opampAddr is the operator's listener on 127.0.0.1, for /v1/opamp and /api/v1/downloads/.
	opampAddr string
	// kubeconfig reaches the control plane as an admin, as a user's would.
	kubeconfig string
	// clock decides the operator's token expiry; a test moves it and puts it back.
	clock = clocktesting.NewFakePassiveClock(time.Now())
)

const (
	timeout  = 30 * time.Second
	interval = 100 * time.Millisecond
)

func TestMain(m *testing.M) {
	os.Exit(testenv.Run(m, func(e *testenv.Env) (func(), error) {
		env = e
		dir, err := os.MkdirTemp("", "linkmesh-cli-")
		if err != nil {
			return nil, err
		}
		cleanup := func() { _ = os.RemoveAll(dir) }
		kubeconfig = filepath.Join(dir, "kubeconfig")
		if err := writeKubeconfig(e, kubeconfig); err != nil {
			cleanup()
			return nil, err
		}
		mirror := filepath.Join(dir, "mirror")
		if err := stageMirror(mirror); err != nil {
			cleanup()
			return nil, err
		}
		op, stop, err := testenv.RunOperator(e, operator.Options{MirrorDir: mirror, Clock: clock})
		if err != nil {
			cleanup()
			return nil, err
		}
		opampAddr = op.ListenerAddr().String()
		return func() { stop(); cleanup() }, nil
	}))
}

func writeKubeconfig(e *testenv.Env, path string) error {
	c := e.Config
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["envtest"] = &clientcmdapi.Cluster{Server: c.Host, CertificateAuthorityData: c.CAData}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: c.CertData, ClientKeyData: c.KeyData, Token: c.BearerToken}
	cfg.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin", Namespace: "default"}
	cfg.CurrentContext = "envtest"
	return clientcmd.WriteToFile(*cfg, path)
}

// stageMirror writes stand-in binaries under the names the installer downloads by default, for both
// architectures it supports, with their checksums, as hack/stage-mirror.sh stages real ones.
func stageMirror(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var tgz bytes.Buffer
	gz := gzip.NewWriter(&tgz)
	tw := tar.NewWriter(gz)
	body := []byte("#!/bin/sh\necho stand-in collector\n")
	if err := tw.WriteHeader(&tar.Header{Name: "otelcol-contrib", Mode: 0o755, Size: int64(len(body))}); err != nil {
		return err
	}
	_, _ = tw.Write(body)
	_ = tw.Close()
	_ = gz.Close()
	for _, arch := range []string{"amd64", "arm64"} {
		files := map[string][]byte{
			"otelcol-contrib_0.153.0_linux_" + arch + ".tar.gz":                            tgz.Bytes(),
			"opampsupervisor_" + manifests.DefaultHostSupervisorVersion + "_linux_" + arch: []byte("#!/bin/sh\necho stand-in supervisor\n"),
		}
		for name, content := range files {
			sum := sha256.Sum256(content)
			if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, name+".sha256"), []byte(hex.EncodeToString(sum[:])+"  "+name+"\n"), 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// result is one run of the plugin.
type result struct {
	code        int
	stdout, err string
}

// kubectlLinkmesh runs the plugin as `kubectl linkmesh ARGS --kubeconfig ...` would.
func kubectlLinkmesh(t *testing.T, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	streams := genericiooptions.IOStreams{In: strings.NewReader(""), Out: &stdout, ErrOut: &stderr}
	code := cli.Run(context.Background(), append(args, "--kubeconfig", kubeconfig), streams)
	return result{code: code, stdout: stdout.String(), err: stderr.String()}
}

func newNamespace(t *testing.T) string { return testenv.Namespace(t, env.Client, "cli") }

// runOnHost runs an install line as printed, with --root and --no-start appended as on a test host, under
// dash (Debian's sh) with a sudo that runs the command as the test's user.
func runOnHost(t *testing.T, line, root string) (string, error) {
	t.Helper()
	dash, err := exec.LookPath("dash")
	if err != nil {
		t.Fatal("dash is needed to run the install line as Debian's sh does (apt-get install dash)")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is needed to run the install line (apt-get install curl)")
	}
	shims := t.TempDir()
	if err := os.WriteFile(filepath.Join(shims, "sudo"), []byte("#!/bin/sh\nexec \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dash, filepath.Join(shims, "sh")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(dash, "-c", line+" --root "+root+" --no-start")
	cmd.Env = []string{"PATH=" + shims + ":" + os.Getenv("PATH"), "TMPDIR=" + t.TempDir()}
	out, err := cmd.CombinedOutput()
	return string(out), err
}
