//go:build realnode

// Package realnode proves the operator where users run it: installed with its Helm chart on a real one-node
// Kubernetes (internal/onenode) behind the RBAC authorizer, with its collectors as DaemonSet pods that a
// real kubelet runs in containerd, each the real supervisor and collector. Run as root with
// `make test-realnode`; it restores the host on teardown and fails if anything is left behind.
package realnode

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/test/framework/testenv"
	"github.com/linkmesh/linkmesh-operator/test/infrastructure/onenode"
)

var (
	cluster *onenode.Cluster
	k8s     client.Client
	helmBin string
	// kubectlBin is the kubectl of the node binaries.
	kubectlBin string
	// images are the locally built images by name (pause, operator, agent): their tags.
	images = map[string]string{}
	// skip is why the suite does not run here.
	skip string
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		skip = "the real-node suite needs root: the kubelet and containerd manage cgroups, mounts and network " +
			"namespaces. Run it as root: sudo make test-realnode"
		fmt.Println("realnode: SKIP:", skip)
		return m.Run()
	}
	began := time.Now()
	nodeBin, err := binDir("LINKMESH_NODE_BIN", "node-binaries.sh")
	if err != nil {
		return fail(err)
	}
	kubectlBin = filepath.Join(nodeBin, "kubectl")
	controlPlaneBin, err := binDir("KUBEBUILDER_ASSETS", "envtest-binaries.sh")
	if err != nil {
		return fail(err)
	}
	if helmBin = os.Getenv("HELM"); helmBin == "" {
		if helmBin, err = script("helm-binary.sh"); err != nil {
			return fail(err)
		}
	}
	imageDir, err := os.MkdirTemp("", "linkmesh-realnode-images-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(imageDir)
	tarballs, err := buildImages(imageDir)
	if err != nil {
		return fail(err)
	}
	fmt.Printf("MEASURE binaries and images ready: %s\n", time.Since(began).Round(time.Second))

	// A signal tears the cluster down before the process dies; a test timeout cannot (go test panics), so
	// every wait in the tests is bounded well below -timeout.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		if _, ok := <-signals; ok {
			cancel()
			if cluster != nil {
				report(cluster.Stop())
			}
			os.Exit(1)
		}
	}()

	start := time.Now()
	cluster, err = onenode.Start(ctx, onenode.Options{
		NodeBin: nodeBin, ControlPlaneBin: controlPlaneBin, Images: tarballs, SandboxImage: images["pause"],
		Logf: func(format string, args ...any) { fmt.Printf(format+"\n", args...) },
	})
	if err != nil {
		return fail(fmt.Errorf("starting the one-node cluster: %w", err))
	}
	fmt.Printf("MEASURE cluster start (etcd to node Ready, images imported): %s\n", time.Since(start).Round(time.Millisecond))
	if k8s, err = newClient(); err != nil {
		report(cluster.Stop())
		return fail(err)
	}

	code := m.Run()
	signal.Stop(signals)
	close(signals)
	stop := time.Now()
	if err := report(cluster.Stop()); err != nil {
		code = 1
	}
	fmt.Printf("MEASURE teardown and host restore: %s\n", time.Since(stop).Round(time.Millisecond))
	return code
}

// report prints what teardown restored and what it could not.
func report(err error) error {
	for _, r := range cluster.Restored() {
		fmt.Println("realnode: restored:", r)
	}
	if err != nil {
		fmt.Println("realnode: FAIL: the host is not as the suite found it:", err)
		return err
	}
	fmt.Println("realnode: host check after teardown: no processes, mounts, network links, iptables rules, cgroups, sysctls or paths left behind")
	return nil
}

func fail(err error) int {
	fmt.Fprintln(os.Stderr, "realnode:", err)
	return 1
}

// binDir is the directory in env, or the one the build script prints.
func binDir(env, name string) (string, error) {
	if d := os.Getenv(env); d != "" {
		return d, nil
	}
	return script(name)
}

// script runs a hack/ script and returns the last line it prints.
func script(name string, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(testenv.RepoRoot(), "hack", name), args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("hack/%s: %w", name, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1], nil
}

// buildImages builds the pause, operator and agent images with hack/images.sh into dir and returns their
// tarballs; images gets their tags.
func buildImages(dir string) ([]string, error) {
	cmd := exec.Command(filepath.Join(testenv.RepoRoot(), "hack", "images.sh"), dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("hack/images.sh: %w", err)
	}
	var tarballs []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			return nil, fmt.Errorf("hack/images.sh printed %q, want <name> <tag> <tarball>", sc.Text())
		}
		images[f[0]] = f[1]
		tarballs = append(tarballs, f[2])
	}
	for _, name := range []string{"pause", "operator", "agent"} {
		if images[name] == "" {
			return nil, fmt.Errorf("hack/images.sh built no %s image", name)
		}
	}
	return tarballs, nil
}

func newClient() (client.Client, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := apiextensionsv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	return client.New(cluster.Config, client.Options{Scheme: scheme})
}
