package console

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/index"
)

// collectorKind is the kind of the objects the console's Events are about.
const collectorKind = "ManagedCollector"

// EventRegardingName indexes cached Events by regarding.name (the cache holds only Events about
// ManagedCollectors), so a ManagedCollector's page lists its Events without reading the others.
const EventRegardingName = "regarding.name"

// handler serves the pages from the informer cache: it never calls the API server for a page, except to
// review tokens and access, and it never reads a Secret.
type handler struct {
	reader   client.Reader
	access   *access
	broker   *broker
	clock    clock.PassiveClock
	log      logr.Logger
	stopping <-chan struct{}
}

type viewerKey struct{}

func viewerFrom(ctx context.Context) *viewer {
	v, _ := ctx.Value(viewerKey{}).(*viewer)
	if v == nil {
		// Only reachable through routes(), which always sets one; fail closed anyway.
		return &viewer{user: nil}
	}
	return v
}

// routes is the console's mux, behind authentication and the security headers.
func (h *handler) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", h.serveCollectors)
	mux.HandleFunc("GET /collectors/{namespace}/{name}", h.serveCollector)
	mux.HandleFunc("GET /collectors/{namespace}/{name}/topology", h.serveTopology)
	mux.HandleFunc("GET /updates", h.serveUpdates)
	mux.Handle("GET /static/", staticFiles)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		// Same-origin script and style only: nothing is fetched from elsewhere, and nothing inline runs.
		hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Frame-Options", "DENY")
		v, err := h.access.authenticate(r)
		if err != nil {
			if errors.Is(err, errUnauthenticated) {
				hd.Set("WWW-Authenticate", `Bearer realm="linkmesh-console"`)
				http.Error(w, err.Error(), http.StatusUnauthorized)
				return
			}
			h.reviewFailed(w, r, err)
			return
		}
		mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), viewerKey{}, v)))
	})
}

func (h *handler) reviewFailed(w http.ResponseWriter, r *http.Request, err error) {
	h.log.Error(err, "Reviewing a console request failed", "path", r.URL.Path)
	http.Error(w, "the API server could not review this request; try again", http.StatusServiceUnavailable)
}

func forbiddenNamespace(ns string) string {
	return fmt.Sprintf("you may not get managedcollectors.%s in namespace %q", v1alpha1.GroupVersion.Group, ns)
}

func (h *handler) write(w http.ResponseWriter, r *http.Request, status int, page string, l layout) {
	l.Viewer = viewerFrom(r.Context()).Name()
	l.Rendered = h.clock.Now().UTC().Format(time.RFC3339)
	b, err := renderPage(page, l)
	if err != nil {
		h.log.Error(err, "Rendering a console page failed", "page", page)
		http.Error(w, "rendering the page failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func (h *handler) writeError(w http.ResponseWriter, r *http.Request, status int, heading, message string) {
	h.write(w, r, status, "error", layout{Title: heading, Crumbs: []cell{{Text: heading}}, Body: errorPage{Heading: heading, Message: message}})
}

// serveCollectors is the Collectors page: /?namespace=&page=.
func (h *handler) serveCollectors(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	v := viewerFrom(ctx)
	filter := r.URL.Query().Get("namespace")
	page, _ := strconv.Atoi(r.URL.Query().Get("page"))
	list := &v1alpha1.ManagedCollectorList{}
	// Read-only views of the cache's objects: with 10,000 ManagedCollectors a deep copy per view would cost.
	if err := h.reader.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil {
		h.log.Error(err, "Listing ManagedCollectors from the cache failed")
		h.writeError(w, r, http.StatusServiceUnavailable, "Collectors", "The operator's cache is not ready yet.")
		return
	}
	var namespaces []string
	for i := range list.Items {
		namespaces = append(namespaces, list.Items[i].Namespace)
	}
	slices.Sort(namespaces)
	namespaces = slices.Compact(namespaces)
	visible, err := h.access.visibleNamespaces(ctx, v, namespaces)
	if err != nil {
		h.reviewFailed(w, r, err)
		return
	}
	show := map[string]bool{}
	for _, ns := range visible {
		if filter == "" || ns == filter {
			show[ns] = true
		}
	}
	mcs := make([]*v1alpha1.ManagedCollector, 0, len(list.Items))
	for i := range list.Items {
		if show[list.Items[i].Namespace] {
			mcs = append(mcs, &list.Items[i])
		}
	}
	slices.SortFunc(mcs, func(a, b *v1alpha1.ManagedCollector) int {
		if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	body := buildCollectorsPage(mcs, visible, filter, page, h.clock.Now())
	h.write(w, r, http.StatusOK, "collectors", layout{
		Title:   "Collectors",
		Crumbs:  []cell{{Text: "Collectors"}},
		Updates: "/updates?" + url.Values{"namespace": {filter}}.Encode(),
		Body:    body,
	})
}

// collector reads the ManagedCollector of the request's path after checking the viewer may get it; it writes
// the error page and returns nil otherwise.
func (h *handler) collector(w http.ResponseWriter, r *http.Request) *v1alpha1.ManagedCollector {
	ctx := r.Context()
	ns, name := r.PathValue("namespace"), r.PathValue("name")
	ok, err := h.access.allowed(ctx, viewerFrom(ctx), ns, getCollectors)
	if err != nil {
		h.reviewFailed(w, r, err)
		return nil
	}
	if !ok {
		// The same answer whether it exists or not.
		h.writeError(w, r, http.StatusForbidden, "Forbidden", forbiddenNamespace(ns)+".")
		return nil
	}
	mc := &v1alpha1.ManagedCollector{}
	if err := h.reader.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, mc, client.UnsafeDisableDeepCopy); err != nil {
		if apierrors.IsNotFound(err) {
			h.writeError(w, r, http.StatusNotFound, "Not found", fmt.Sprintf("There is no ManagedCollector %s in namespace %s.", name, ns))
			return nil
		}
		h.log.Error(err, "Reading a ManagedCollector from the cache failed")
		h.writeError(w, r, http.StatusServiceUnavailable, "Unavailable", "The operator's cache is not ready yet.")
		return nil
	}
	return mc
}

func crumbs(mc *v1alpha1.ManagedCollector, last ...cell) []cell {
	out := []cell{
		{Text: "Collectors", Href: "/"},
		{Text: mc.Namespace, Href: "/?namespace=" + url.QueryEscape(mc.Namespace)},
	}
	if len(last) == 0 {
		return append(out, cell{Text: mc.Name})
	}
	return append(append(out, cell{Text: mc.Name, Href: collectorPath(mc.Namespace, mc.Name)}), last...)
}

func updatesOf(mc *v1alpha1.ManagedCollector) string {
	return "/updates?" + url.Values{"namespace": {mc.Namespace}, "name": {mc.Name}}.Encode()
}

// serveCollector is one ManagedCollector's page.
func (h *handler) serveCollector(w http.ResponseWriter, r *http.Request) {
	mc := h.collector(w, r)
	if mc == nil {
		return
	}
	ctx := r.Context()
	v := viewerFrom(ctx)
	var sec collectorSections
	var err error
	if sec.tokensAllowed, err = h.access.allowed(ctx, v, mc.Namespace, listTokens); err != nil {
		h.reviewFailed(w, r, err)
		return
	}
	if sec.eventsAllowed, err = h.access.allowed(ctx, v, mc.Namespace, listEvents); err != nil {
		h.reviewFailed(w, r, err)
		return
	}
	if sec.tokensAllowed {
		tokens := &v1alpha1.EnrollmentTokenList{}
		if err := h.reader.List(ctx, tokens, client.InNamespace(mc.Namespace), client.MatchingFields{index.TokenCollector: mc.Name}, client.UnsafeDisableDeepCopy); err != nil {
			h.log.Error(err, "Listing EnrollmentTokens from the cache failed")
		}
		for i := range tokens.Items {
			sec.tokens = append(sec.tokens, &tokens.Items[i])
		}
		slices.SortFunc(sec.tokens, func(a, b *v1alpha1.EnrollmentToken) int { return strings.Compare(a.Name, b.Name) })
	}
	if sec.eventsAllowed {
		events := &eventsv1.EventList{}
		if err := h.reader.List(ctx, events, client.InNamespace(mc.Namespace), client.MatchingFields{EventRegardingName: mc.Name}, client.UnsafeDisableDeepCopy); err != nil {
			h.log.Error(err, "Listing Events from the cache failed")
		}
		for i := range events.Items {
			if e := &events.Items[i]; e.Regarding.Kind == collectorKind && (e.Regarding.UID == "" || e.Regarding.UID == mc.UID) {
				sec.events = append(sec.events, e)
			}
		}
	}
	h.write(w, r, http.StatusOK, "collector", layout{
		Title:   mc.Namespace + "/" + mc.Name,
		Crumbs:  crumbs(mc),
		Updates: updatesOf(mc),
		Body:    buildCollectorPage(mc, sec, h.clock.Now()),
	})
}

// topologyView is the Topology page's template data; the SVG is RenderTopology's, which escapes every name.
type topologyView struct {
	topologyPage
	SVG template.HTML
}

// serveTopology is one ManagedCollector's Topology page.
func (h *handler) serveTopology(w http.ResponseWriter, r *http.Request) {
	mc := h.collector(w, r)
	if mc == nil {
		return
	}
	p := buildTopologyPage(mc, h.clock.Now())
	h.write(w, r, http.StatusOK, "topology", layout{
		Title:   mc.Namespace + "/" + mc.Name + " topology",
		Crumbs:  crumbs(mc, cell{Text: "Topology"}),
		Updates: updatesOf(mc),
		//nolint:gosec // RenderTopology escapes every text it draws (topology_test covers names with markup).
		Body: topologyView{topologyPage: p, SVG: template.HTML(p.SVG)},
	})
}
