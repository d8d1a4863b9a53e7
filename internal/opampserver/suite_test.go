package opampserver_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/collectorconfig"
	"github.com/linkmesh/linkmesh-operator/internal/credential"
	"github.com/linkmesh/linkmesh-operator/internal/fleet"
	"github.com/linkmesh/linkmesh-operator/internal/index"
	"github.com/linkmesh/linkmesh-operator/internal/listener"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
	"github.com/linkmesh/linkmesh-operator/internal/opampserver"
	"github.com/linkmesh/linkmesh-operator/test/framework/leakcheck"
	"github.com/linkmesh/linkmesh-operator/test/framework/testenv"
)

// maxMessageSize is small in tests so the oversized case is cheap.
const maxMessageSize = 64 << 10

var (
	scheme   = runtime.NewScheme()
	k8s      client.Client
	mgrCache cache.Cache
	fl       *fleet.Registry
	lis      *listener.Server
	clk      *clocktesting.FakePassiveClock
	// credentials is the server's authority on tokens, on the manager's cache.
	credentials *credential.Authority
	statuses    *statusWriter
	addr        string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if testenv.Fuzzing() {
		// The fuzz targets serve on a fake client; the engine starts this binary once per worker.
		return m.Run()
	}
	// Every log line, at every verbosity, is kept so the run can prove no token was logged.
	logs := &logBuffer{}
	ctrl.SetLogger(funcr.New(logs.write, funcr.Options{Verbosity: 10}))
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		panic(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting envtest (set KUBEBUILDER_ASSETS=$(hack/envtest-binaries.sh)):", err)
		return 1
	}
	defer func() { _ = env.Stop() }()

	k8s, err = client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		panic(err)
	}
	// The same cache restriction as cmd/manager: only the operator's own Secrets.
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {Label: labels.SelectorFromSet(labels.Set{naming.LabelManagedBy: naming.FieldOwner})},
		}},
	})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	fl = fleet.New(fleet.Options{})
	clk = clocktesting.NewFakePassiveClock(time.Now())
	if err := index.Setup(ctx, mgr.GetFieldIndexer()); err != nil {
		panic(err)
	}
	credentials = credential.NewAuthority(mgr.GetCache(), clk)
	if err := credentials.Watch(ctx, mgr.GetCache()); err != nil {
		panic(err)
	}
	srv, err := opampserver.New(opampserver.Options{
		Client:         mgr.GetClient(),
		Credentials:    credentials,
		APIReader:      mgr.GetAPIReader(),
		Fleet:          fl,
		MaxMessageSize: maxMessageSize,
		Clock:          clk,
	})
	if err != nil {
		panic(err)
	}
	if err := srv.Watch(ctx, mgr.GetCache()); err != nil {
		panic(err)
	}
	lis = listener.New(listener.Options{BindAddress: "127.0.0.1:0"})
	lis.Handle(opampserver.Path, srv.Handler())
	lis.AddConnContext(srv.ConnContext())
	if err := lis.Listen(); err != nil {
		panic(err)
	}
	addr = lis.Addr().String()
	if err := mgr.Add(fl); err != nil {
		panic(err)
	}
	if err := mgr.Add(lis); err != nil {
		panic(err)
	}
	mgrCache = mgr.GetCache()
	statuses = &statusWriter{client: &countingClient{Client: k8s}, writes: map[types.NamespacedName]int{}, events: map[types.NamespacedName][]fleet.Event{}}
	go statuses.run(ctx, fl)

	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	if !mgrCache.WaitForCacheSync(ctx) {
		panic("cache did not sync")
	}
	code := m.Run()
	// What the server wrote to the API (EnrollmentToken redeems, and the ManagedCollector status the stand-in
	// writes from the fleet's snapshots) must hold no token either.
	leaks := leakcheck.New()
	for _, tok := range issued.tokens {
		leaks.Remember(tok)
	}
	report, err := leaks.Check(context.Background(), k8s)
	cancel()
	if err := <-done; err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
	}
	if os.Getenv("TEST_LOG") != "" {
		fmt.Fprint(os.Stderr, logs.String())
	}
	if leaked := logs.containsAny(issued.tokens); leaked != "" {
		fmt.Fprintln(os.Stderr, "FAIL: a log line contains a token:", leaked)
		return 1
	}
	if err != nil || len(report.Leaks) > 0 {
		fmt.Fprintln(os.Stderr, "FAIL:", report, err)
		return 1
	}
	if logs.lines() == 0 {
		fmt.Fprintln(os.Stderr, "FAIL: no log lines captured; the token check would prove nothing")
		return 1
	}
	return code
}

type logBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
	n   int
}

func (l *logBuffer) write(prefix, args string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	l.buf.WriteString(prefix + " " + args + "\n")
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) lines() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// containsAny returns the line that holds one of the tokens, or "".
func (l *logBuffer) containsAny(tokens []string) string {
	text := l.String()
	for _, line := range strings.Split(text, "\n") {
		for _, tok := range tokens {
			if strings.Contains(line, tok) {
				return strings.ReplaceAll(line, tok, "<token>")
			}
		}
	}
	return ""
}

// countingClient counts status writes, which is what the issue bounds.
type countingClient struct {
	client.Client
	writes atomic.Int64
}

func (c *countingClient) Status() client.SubResourceWriter {
	return &countingStatus{SubResourceWriter: c.Client.Status(), n: &c.writes}
}

type countingStatus struct {
	client.SubResourceWriter
	n *atomic.Int64
}

func (s *countingStatus) Update(ctx context.Context, obj client.Object, opts ...client.SubResourceUpdateOption) error {
	s.n.Add(1)
	return s.SubResourceWriter.Update(ctx, obj, opts...)
}

// statusWriter stands in for the ManagedCollector reconciler's status phase: one status write per signal,
// from a snapshot, and the snapshot's events kept for assertions.
type statusWriter struct {
	client *countingClient

	mu     sync.Mutex
	writes map[types.NamespacedName]int
	events map[types.NamespacedName][]fleet.Event
}

func (w *statusWriter) run(ctx context.Context, f *fleet.Registry) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-f.Changes():
			key := types.NamespacedName{Namespace: ev.Object.Namespace, Name: ev.Object.Name}
			if err := w.write(ctx, f, key); err != nil && !errors.Is(err, context.Canceled) {
				fmt.Fprintln(os.Stderr, "status write:", err)
			}
		}
	}
}

func (w *statusWriter) write(ctx context.Context, f *fleet.Registry, key types.NamespacedName) error {
	var mc v1alpha1.ManagedCollector
	if err := w.client.Get(ctx, key, &mc); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}
	snap := f.Snapshot(key, collectorconfig.Hash(mc.Spec.Config))
	snap.Counts.Desired = mc.Status.Counts.Desired
	mc.Status.Counts = snap.Counts
	mc.Status.Agents = snap.Agents
	mc.Status.Connected = fmt.Sprintf("%d/%d", snap.Counts.Connected, snap.Counts.Desired)
	w.mu.Lock()
	w.writes[key]++
	w.events[key] = append(w.events[key], f.DrainEvents(key)...)
	w.mu.Unlock()
	return w.client.Status().Update(ctx, &mc)
}

func (w *statusWriter) writesOf(key types.NamespacedName) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writes[key]
}

func (w *statusWriter) eventsOf(key types.NamespacedName) []fleet.Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]fleet.Event(nil), w.events[key]...)
}
