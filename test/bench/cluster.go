package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	linkmesh "github.com/linkmesh/linkmesh-operator/internal/operator"
	"github.com/linkmesh/linkmesh-operator/test/bench/apirequests"
	"github.com/linkmesh/linkmesh-operator/test/framework/process"
)

// cluster is the bench's view of the API server: a client whose every request is counted (so the bench
// can subtract its own requests from the server's counts), and informers on the ManagedCollectors and
// EnrollmentTokens of one namespace, so that waiting for status costs no requests.
type cluster struct {
	namespace string
	cfg       *rest.Config
	own       *apirequests.Recorder
	client    client.Client
	metrics   *http.Client
	cache     cache.Cache
	stopCache context.CancelFunc
	changed   *broadcast

	mu     sync.Mutex
	mcs    map[string]*v1alpha1.ManagedCollector
	tokens map[string]*v1alpha1.EnrollmentToken
	waits  []*clusterWait
	// followers see every version of a ManagedCollector the informer delivers, with the time it arrived,
	// under the lock.
	followers map[int]func(time.Time, *v1alpha1.ManagedCollector)
	nextID    int
}

// clusterWait is a condition on the cluster's objects and the time an event first satisfied it.
type clusterWait struct {
	ok func() bool
	at chan time.Time
}

func newCluster(ctx context.Context, kubeconfig, namespace string) (*cluster, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", kubeconfig, err)
	}
	// The bench must not be throttled on the client side while it creates a thousand tokens.
	cfg.QPS, cfg.Burst = 1000, 1000
	own := apirequests.NewRecorder()
	cfg.Wrap(own.Wrap)
	scheme, err := linkmesh.NewScheme()
	if err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	ca, err := cache.New(cfg, cache.Options{Scheme: scheme, DefaultNamespaces: map[string]cache.Config{namespace: {}}})
	if err != nil {
		return nil, err
	}
	cl := &cluster{
		namespace: namespace, cfg: cfg, own: own, client: c, metrics: hc, cache: ca, changed: newBroadcast(),
		mcs: map[string]*v1alpha1.ManagedCollector{}, tokens: map[string]*v1alpha1.EnrollmentToken{},
	}
	cacheCtx, cancel := context.WithCancel(ctx)
	cl.stopCache = cancel
	for _, obj := range []client.Object{&v1alpha1.ManagedCollector{}, &v1alpha1.EnrollmentToken{}} {
		inf, err := ca.GetInformer(cacheCtx, obj)
		if err != nil {
			cancel()
			return nil, err
		}
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    cl.observe,
			UpdateFunc: func(_, obj any) { cl.observe(obj) },
		}); err != nil {
			cancel()
			return nil, err
		}
	}
	go func() { _ = ca.Start(cacheCtx) }()
	syncCtx, syncCancel := context.WithTimeout(ctx, time.Minute)
	defer syncCancel()
	if !ca.WaitForCacheSync(syncCtx) {
		cancel()
		return nil, fmt.Errorf("the bench's informers did not sync within a minute")
	}
	return cl, nil
}

// Close stops the informers.
func (cl *cluster) Close() { cl.stopCache() }

func (cl *cluster) observe(obj any) {
	now := time.Now()
	cl.mu.Lock()
	switch o := obj.(type) {
	case *v1alpha1.ManagedCollector:
		cl.mcs[o.Name] = o
		for _, f := range cl.followers {
			f(now, o)
		}
	case *v1alpha1.EnrollmentToken:
		cl.tokens[o.Name] = o
	}
	kept := cl.waits[:0]
	for _, w := range cl.waits {
		if w.ok() {
			w.at <- now
			continue
		}
		kept = append(kept, w)
	}
	cl.waits = kept
	cl.mu.Unlock()
	cl.changed.Notify()
}

// when waits until ok (called with the cluster's lock held) is true of the objects, and returns when the
// event that made it true arrived, or now if it already is.
func (cl *cluster) when(ctx context.Context, what string, timeout time.Duration, ok func() bool, describe func() string) (time.Time, error) {
	w := &clusterWait{ok: ok, at: make(chan time.Time, 1)}
	cl.mu.Lock()
	if ok() {
		cl.mu.Unlock()
		return time.Now(), nil
	}
	cl.waits = append(cl.waits, w)
	cl.mu.Unlock()
	remove := func() {
		cl.mu.Lock()
		defer cl.mu.Unlock()
		for i, x := range cl.waits {
			if x == w {
				cl.waits = append(cl.waits[:i], cl.waits[i+1:]...)
				return
			}
		}
	}
	select {
	case at := <-w.at:
		return at, nil
	case <-time.After(timeout):
		remove()
		return time.Time{}, fmt.Errorf("%s: %w after %s (%s)", what, errTimeout, timeout, describe())
	case <-ctx.Done():
		remove()
		return time.Time{}, fmt.Errorf("%s: %w (%s)", what, context.Cause(ctx), describe())
	}
}

// follow calls f, with the cluster's lock held, for every version of a ManagedCollector the informer
// delivers from now on, with the time it arrived, until stop is called: a timeline of status, where when
// sees only the first time a condition holds.
func (cl *cluster) follow(f func(at time.Time, mc *v1alpha1.ManagedCollector)) (stop func()) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.followers == nil {
		cl.followers = map[int]func(time.Time, *v1alpha1.ManagedCollector){}
	}
	id := cl.nextID
	cl.nextID++
	cl.followers[id] = f
	return func() {
		cl.mu.Lock()
		defer cl.mu.Unlock()
		delete(cl.followers, id)
	}
}

// collector is the latest ManagedCollector name seen by the informer, or nil; call with the lock held.
func (cl *cluster) collectorLocked(name string) *v1alpha1.ManagedCollector { return cl.mcs[name] }

// Collector is a copy of the latest ManagedCollector name.
func (cl *cluster) Collector(name string) *v1alpha1.ManagedCollector {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if mc := cl.mcs[name]; mc != nil {
		return mc.DeepCopy()
	}
	return nil
}

// statusText describes a ManagedCollector's status counts for error messages.
func (cl *cluster) statusText(name string) func() string {
	return func() string {
		mc := cl.Collector(name)
		if mc == nil {
			return "no ManagedCollector " + name + " seen"
		}
		c := mc.Status.Counts
		return fmt.Sprintf("status of %s: connected %d, configApplied %d, configFailed %d, configDrifted %d, configHash %.12s, observedGeneration %d of %d",
			name, c.Connected, c.ConfigApplied, c.ConfigFailed, c.ConfigDrifted, mc.Status.ConfigHash, mc.Status.ObservedGeneration, mc.Generation)
	}
}

// statusShows waits until the ManagedCollector's status has hash as its config hash and counts
// connected and configApplied equal to want, and returns when the informer saw it.
func (cl *cluster) statusShows(ctx context.Context, name, hash string, want int, timeout time.Duration) (time.Time, error) {
	return cl.when(ctx, fmt.Sprintf("status of %s showing %d connected and %d applied config %.12s", name, want, want, hash), timeout, func() bool {
		mc := cl.collectorLocked(name)
		return mc != nil && mc.Status.ConfigHash == hash &&
			int(mc.Status.Counts.Connected) == want && int(mc.Status.Counts.ConfigApplied) == want
	}, cl.statusText(name))
}

// redeemed counts the EnrollmentTokens in phase Redeemed; call with the lock held.
func (cl *cluster) redeemedLocked() int {
	n := 0
	for _, t := range cl.tokens {
		if t.Status.Phase == v1alpha1.TokenRedeemed {
			n++
		}
	}
	return n
}

// apiCounts reads the API server's request counts and what the bench itself has sent so far.
func (cl *cluster) apiCounts(ctx context.Context) (server, own apirequests.Counts, err error) {
	// Own first: a request the bench makes meanwhile is then in the server's count but not in own, and
	// shows as the operator's; the bench makes none while it measures, other than its informers' watches.
	own = cl.own.Counts()
	server, err = apirequests.Scrape(ctx, cl.metrics, cl.cfg.Host)
	return server, own, err
}

// createNamespace creates the bench's namespace.
func (cl *cluster) createNamespace(ctx context.Context) error {
	return cl.client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: cl.namespace}})
}

// window is a stretch of time over which the bench counts the operator's API requests and the CPU of its
// replicas.
type window struct {
	server, own apirequests.Counts
	usages      []process.Usage
}

// openWindow takes the counts at the start of a window, for the operator replicas pids.
func openWindow(ctx context.Context, cl *cluster, pids ...int) (window, error) {
	s, o, err := cl.apiCounts(ctx)
	if err != nil {
		return window{}, err
	}
	w := window{server: s, own: o}
	for _, pid := range pids {
		u, err := process.UsageOf(pid)
		if err != nil {
			return window{}, err
		}
		w.usages = append(w.usages, u)
	}
	return w, nil
}

// measured is what happened in a window.
type measured struct {
	// Requests are the API server's, without the bench's own.
	Requests apirequests.Counts
	// CPU is the replicas' CPU time in the window, in seconds, summed.
	CPU float64
	// Usage is the first replica's at the end.
	Usage process.Usage
	// CPUs and Usages are each replica's.
	CPUs   []float64
	Usages []process.Usage
}

// close takes the counts at the end of a window and returns the differences; pids are those it was
// opened with.
func (w window) close(ctx context.Context, cl *cluster, pids ...int) (measured, error) {
	end, err := openWindow(ctx, cl, pids...)
	if err != nil {
		return measured{}, err
	}
	m := measured{Requests: end.server.Sub(w.server).Sub(end.own.Sub(w.own)), Usages: end.usages}
	for i, u := range end.usages {
		cpu := u.CPU - w.usages[i].CPU
		m.CPUs = append(m.CPUs, cpu)
		m.CPU += cpu
	}
	if len(end.usages) > 0 {
		m.Usage = end.usages[0]
	}
	return m, nil
}

// writePeak scrapes the API server's counts every second while it runs and keeps the most writes the
// operator made in any one of those seconds: a budget of writes per second is about every second, not
// only the average over a window.
type writePeak struct {
	stopCh chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	// series are the writes in each second, in order.
	series []int64
	err    error
}

// sampleWrites starts a writePeak.
func (cl *cluster) sampleWrites(ctx context.Context) *writePeak {
	p := &writePeak{stopCh: make(chan struct{})}
	p.wg.Go(func() {
		server, own, err := cl.apiCounts(ctx)
		if err != nil {
			p.err = err
			return
		}
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-p.stopCh:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			s, o, err := cl.apiCounts(ctx)
			if err != nil {
				p.err = err
				return
			}
			d := s.Sub(server).Sub(o.Sub(own))
			p.series = append(p.series, d.Total(func(k apirequests.Key) bool { return k.Write() }))
			server, own = s, o
		}
	})
	return p
}

// stop ends the sampling, if it has not ended yet, and returns the writes in each second.
func (p *writePeak) stop() ([]int64, error) {
	p.once.Do(func() { close(p.stopCh) })
	p.wg.Wait()
	return p.series, p.err
}

// perSecondText is the most writes in one second and every second's, as a table cell.
func perSecondText(series []int64) string {
	if len(series) == 0 {
		return "none sampled"
	}
	parts := make([]string, len(series))
	for i, n := range series {
		parts[i] = strconv.FormatInt(n, 10)
	}
	return fmt.Sprintf("%d (each second: %s)", slices.Max(series), strings.Join(parts, " "))
}
