// Package testenv starts one real kube-apiserver and etcd (envtest) per test package, with this operator's
// CRDs installed, and stops them on every exit path it can see, so no control plane outlives its tests. At
// the end of the run it fails the package if any token the operator minted shows up in its logs, Events,
// ConfigMaps, DaemonSets or ManagedCollector and EnrollmentToken objects (package leakcheck).
package testenv

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	uzap "go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/linkmesh/linkmesh-operator/internal/operator"
	"github.com/linkmesh/linkmesh-operator/test/framework/leakcheck"
)

// Env is a running control plane.
type Env struct {
	// Config reaches the API server as an admin.
	Config *rest.Config
	// Client is an uncached client with the operator's scheme.
	Client client.Client

	te *envtest.Environment
}

// WriteKubeconfig writes to path a kubeconfig of a new admin user (group system:masters) named user, for
// processes that reach the control plane on their own, such as the manager binary.
func (e *Env) WriteKubeconfig(path, user string) error {
	u, err := e.te.AddUser(envtest.User{Name: user, Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("adding the user %s: %w", user, err)
	}
	kc, err := u.KubeConfig()
	if err != nil {
		return err
	}
	return os.WriteFile(path, kc, 0o600)
}

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// Options change the control plane that RunWith starts.
type Options struct {
	// NoCRDs starts the control plane without this operator's CRDs, for tests that install them themselves
	// (the Helm chart's tests install the chart's copies).
	NoCRDs bool
}

// Run starts the control plane, calls setup, runs the tests, calls the teardown setup returned and stops
// the control plane, also on SIGINT and SIGTERM. It returns the exit code for os.Exit.
func Run(m *testing.M, setup func(*Env) (teardown func(), err error)) int {
	return RunWith(m, Options{}, setup)
}

// Fuzzing reports whether this test binary runs a fuzz target (go test -fuzz, or one of its workers). A
// TestMain calls it before it starts a control plane: a fuzz target needs none, and the fuzzing engine starts
// the binary once per worker. It parses the flags, as a TestMain that reads them must.
func Fuzzing() bool {
	flag.Parse()
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		return true
	}
	f := flag.Lookup("test.fuzzworker")
	return f != nil && f.Value.String() == "true"
}

// RunWith is Run with options.
func RunWith(m *testing.M, o Options, setup func(*Env) (teardown func(), err error)) int {
	if Fuzzing() {
		return m.Run()
	}
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fmt.Fprintln(os.Stderr, "KUBEBUILDER_ASSETS is not set: run `make test`, or set it to the output of hack/envtest-binaries.sh")
		return 1
	}
	// Every log line also goes to the leak check, at every verbosity up to V(7); stderr gets only what
	// zapLevel lets by. From V(8) on client-go logs the bodies of API requests, Secrets included, as
	// kubectl -v=8 does; cmd/manager warns about it.
	leaks := leakcheck.New()
	belowBodies := uzap.LevelEnablerFunc(func(l zapcore.Level) bool { return l >= -7 })
	capture := zapcore.NewCore(zapcore.NewConsoleEncoder(uzap.NewDevelopmentEncoderConfig()), leaks, belowBodies)
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(true), zap.Level(zapLevel()), zap.StacktraceLevel(zapcore.PanicLevel),
		zap.RawZapOpts(uzap.WrapCore(func(c zapcore.Core) zapcore.Core { return zapcore.NewTee(c, capture) }))))
	te := &envtest.Environment{}
	if !o.NoCRDs {
		te.CRDDirectoryPaths = []string{filepath.Join(RepoRoot(), "config", "crd", "bases")}
		te.ErrorIfCRDPathMissing = true
	}
	cfg, err := te.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting envtest:", err)
		return 1
	}
	stopped := make(chan struct{})
	stop := func() {
		select {
		case <-stopped:
			return
		default:
			close(stopped)
		}
		if err := te.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping envtest:", err)
		}
	}
	defer stop()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		if _, ok := <-sigs; ok {
			stop()
			os.Exit(130)
		}
	}()
	defer signal.Stop(sigs)

	scheme, err := operator.NewScheme()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		fmt.Fprintln(os.Stderr, "creating a client:", err)
		return 1
	}
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	if err := leaks.WatchSecrets(watchCtx, cfg, scheme); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	env := &Env{Config: cfg, Client: c, te: te}
	code := func() int {
		if setup != nil {
			teardown, err := setup(env)
			if teardown != nil {
				defer teardown()
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "test setup:", err)
				return 1
			}
		}
		return m.Run()
	}()
	// After the operator stopped: everything it wrote, against every token it minted.
	report, err := leaks.Check(context.Background(), c)
	switch {
	case err != nil:
		fmt.Fprintln(os.Stderr, err)
		return 1
	case len(report.Leaks) > 0:
		fmt.Fprintln(os.Stderr, "FAIL:", report)
		return 1
	case testing.Verbose():
		fmt.Fprintln(os.Stderr, report)
	}
	return code
}

// StartOperator runs the operator against env until the returned function is called, which waits for the
// manager to stop.
func StartOperator(env *Env, o operator.Options) (func(), error) {
	_, stop, err := RunOperator(env, o)
	return stop, err
}

// RunOperator is StartOperator that also returns the operator, to reach its listener. Its listener binds
// 127.0.0.1:0 unless o says otherwise, and collectors are told its address unless o.ExternalURL is set.
func RunOperator(env *Env, o operator.Options) (*operator.Operator, func(), error) {
	if o.MetricsAddr == "" {
		o.MetricsAddr = "0"
	}
	if o.ProbeAddr == "" {
		o.ProbeAddr = "0"
	}
	if o.OpAMPBindAddress == "" {
		o.OpAMPBindAddress = "127.0.0.1:0"
	}
	op, err := operator.New(env.Config, o)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- op.Start(ctx) }()
	syncCtx, syncCancel := context.WithTimeout(ctx, 60*time.Second)
	defer syncCancel()
	if !op.GetCache().WaitForCacheSync(syncCtx) {
		cancel()
		return nil, nil, fmt.Errorf("operator cache did not sync: %w", <-done)
	}
	return op, func() {
		cancel()
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, "operator stopped with:", err)
		}
	}, nil
}

// zapLevel keeps test output short unless TEST_VERBOSE_LOGS is set.
func zapLevel() zapcore.Level {
	if os.Getenv("TEST_VERBOSE_LOGS") != "" {
		return zapcore.DebugLevel
	}
	return zapcore.ErrorLevel
}

// Namespace creates a namespace named prefix-<random> for one test, so tests of a package sharing a control
// plane never see each other's objects.
func Namespace(t testing.TB, c client.Client, prefix string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}
	if err := c.Create(context.Background(), ns); err != nil {
		t.Fatalf("creating a namespace: %v", err)
	}
	return ns.Name
}
