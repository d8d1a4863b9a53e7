package console

import (
	"context"
	"net/http"
	"sync"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
)

// How /updates paces a page: changes are gathered for coalesce before the page is told once; a comment keeps
// idle connections open through proxies; a stream ends after maxStream, so the browser reconnects and the
// viewer's token is reviewed again.
const (
	coalesce    = time.Second
	heartbeat   = 25 * time.Second
	maxStream   = 5 * time.Minute
	sseDeadline = 10 * time.Second
	// maxPending bounds the namespaces a subscriber remembers between two events; past it any change counts.
	maxPending = 1024
)

// broker tells subscribers which ManagedCollectors changed, by namespace and name: the ManagedCollector
// itself, one of its EnrollmentTokens or an Event about it. It is fed by the cache's informers.
type broker struct {
	mu   sync.Mutex
	subs map[*subscriber]struct{}
}

// subscriber is one /updates stream: it wants changes in namespace (all when empty) and, when name is set, of
// that ManagedCollector only.
type subscriber struct {
	namespace, name string
	notify          chan struct{}

	mu       sync.Mutex
	pending  map[string]struct{}
	overflow bool
}

func newBroker() *broker { return &broker{subs: map[*subscriber]struct{}{}} }

func (b *broker) subscribe(namespace, name string) *subscriber {
	s := &subscriber{namespace: namespace, name: name, notify: make(chan struct{}, 1), pending: map[string]struct{}{}}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s
}

func (b *broker) unsubscribe(s *subscriber) {
	b.mu.Lock()
	delete(b.subs, s)
	b.mu.Unlock()
}

// publish records that the ManagedCollector namespace/name changed. It never blocks: it runs in the informers'
// handlers.
func (b *broker) publish(namespace, name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		if (s.namespace != "" && s.namespace != namespace) || (s.name != "" && s.name != name) {
			continue
		}
		s.mu.Lock()
		if len(s.pending) < maxPending {
			s.pending[namespace] = struct{}{}
		} else {
			s.overflow = true
		}
		s.mu.Unlock()
		select {
		case s.notify <- struct{}{}:
		default:
		}
	}
}

// drain returns the namespaces that changed since the last drain; all is true past maxPending.
func (s *subscriber) drain() (namespaces []string, all bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ns := range s.pending {
		namespaces = append(namespaces, ns)
	}
	all = s.overflow
	s.pending, s.overflow = map[string]struct{}{}, false
	return namespaces, all
}

// handlerFor feeds the broker from one informer, with key naming the ManagedCollector an object is about.
func (b *broker) handlerFor(key func(client.Object) (string, string, bool)) toolscache.ResourceEventHandler {
	on := func(obj any) {
		if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		o, ok := obj.(client.Object)
		if !ok {
			return
		}
		if ns, name, ok := key(o); ok {
			b.publish(ns, name)
		}
	}
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { on(obj) },
		UpdateFunc: func(oldObj, newObj any) {
			// A resync repeats what is known: not a change.
			if o, n := oldObj.(client.Object), newObj.(client.Object); o != nil && n != nil && o.GetResourceVersion() == n.GetResourceVersion() {
				return
			}
			on(newObj)
		},
		DeleteFunc: on,
	}
}

// keys of the objects the pages show, by the ManagedCollector they belong to.
func collectorKey(o client.Object) (string, string, bool) { return o.GetNamespace(), o.GetName(), true }

func tokenKey(o client.Object) (string, string, bool) {
	et, ok := o.(*v1alpha1.EnrollmentToken)
	if !ok {
		return "", "", false
	}
	return et.Namespace, et.Spec.CollectorRef.Name, true
}

func eventKey(o client.Object) (string, string, bool) {
	e, ok := o.(*eventsv1.Event)
	if !ok || e.Regarding.Kind != collectorKind {
		return "", "", false
	}
	return e.Namespace, e.Regarding.Name, true
}

// serveUpdates is /updates?namespace=&name=: a server-sent event "change" each time what the page of that
// scope shows may have changed, at most once per coalesce. It sends no data: the page fetches itself again,
// through the same authorization as any page. Changes in namespaces the viewer may not see are not told.
func (h *handler) serveUpdates(w http.ResponseWriter, r *http.Request) {
	v := viewerFrom(r.Context())
	ns, name := r.URL.Query().Get("namespace"), r.URL.Query().Get("name")
	if name != "" && ns == "" {
		http.Error(w, "name needs namespace", http.StatusBadRequest)
		return
	}
	if ns != "" {
		ok, err := h.access.allowed(r.Context(), v, ns, getCollectors)
		if err != nil {
			h.reviewFailed(w, r, err)
			return
		}
		if !ok {
			http.Error(w, forbiddenNamespace(ns), http.StatusForbidden)
			return
		}
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(s string) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(sseDeadline))
		if _, err := w.Write([]byte(s)); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !send("retry: 2000\n: connected\n\n") {
		return
	}
	sub := h.broker.subscribe(ns, name)
	defer h.broker.unsubscribe(sub)
	ping := time.NewTicker(heartbeat)
	defer ping.Stop()
	end := time.NewTimer(maxStream)
	defer end.Stop()
	var due <-chan time.Time
	for {
		select {
		case <-r.Context().Done():
			return
		case <-h.stopping:
			return
		case <-end.C:
			return
		case <-ping.C:
			if !send(": ping\n\n") {
				return
			}
		case <-sub.notify:
			if due == nil {
				due = time.After(coalesce)
			}
		case <-due:
			due = nil
			if h.anyVisible(r.Context(), v, sub) && !send("event: change\ndata: {}\n\n") {
				return
			}
		}
	}
}

// anyVisible says whether a change the subscriber gathered is in a namespace the viewer may see.
func (h *handler) anyVisible(ctx context.Context, v *viewer, sub *subscriber) bool {
	namespaces, all := sub.drain()
	if v.user == nil || all || sub.namespace != "" {
		// The scope's namespace was checked when the stream opened; past maxPending, tell (a change signal
		// carries nothing but "fetch again").
		return len(namespaces) > 0 || all
	}
	visible, err := h.access.visibleNamespaces(ctx, v, namespaces)
	return err == nil && len(visible) > 0
}
