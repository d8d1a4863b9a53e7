// Package apirequests counts API requests by verb and resource as the API server counts them, from its
// own apiserver_request_total, and counts the requests a client makes itself, so that a benchmark can
// subtract its own requests from the server's and show only those of the program under test.
package apirequests

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/apimachinery/pkg/types"
)

// Key is a kind of request: the verb label of apiserver_request_total (GET, LIST, WATCH, POST, PUT,
// PATCH, APPLY, DELETE, DELETECOLLECTION) and the resource and subresource it was made on.
type Key struct {
	Verb, Resource, Subresource string
}

func (k Key) String() string {
	if k.Subresource != "" {
		return k.Verb + " " + k.Resource + "/" + k.Subresource
	}
	return k.Verb + " " + k.Resource
}

// Write says whether the verb changes something.
func (k Key) Write() bool {
	switch k.Verb {
	case "POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION":
		return true
	}
	return false
}

// Counts are requests by kind.
type Counts map[Key]int64

// MetricName is the API server's counter of requests.
const MetricName = "apiserver_request_total"

// Parse reads apiserver_request_total from a Prometheus text exposition and sums it over the labels other
// than verb, resource and subresource (codes, scope, component, group, version). Requests that name no
// resource (/metrics, /readyz, discovery) are left out.
func Parse(r io.Reader) (Counts, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parsing the API server's metrics: %w", err)
	}
	fam, ok := families[MetricName]
	if !ok {
		return nil, fmt.Errorf("the API server's metrics have no %s", MetricName)
	}
	out := Counts{}
	for _, m := range fam.GetMetric() {
		var k Key
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "verb":
				k.Verb = l.GetValue()
			case "resource":
				k.Resource = l.GetValue()
			case "subresource":
				k.Subresource = l.GetValue()
			}
		}
		if k.Resource == "" {
			continue
		}
		out[k] += int64(m.GetCounter().GetValue())
	}
	return out, nil
}

// Scrape reads the API server's /metrics at base (its URL) with an authorized client.
func Scrape(ctx context.Context, c *http.Client, base string) (Counts, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reading the API server's metrics: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("reading the API server's metrics: %s", resp.Status)
	}
	return Parse(resp.Body)
}

// Sub is c minus o, without the kinds whose difference is zero.
func (c Counts) Sub(o Counts) Counts {
	out := Counts{}
	for k, v := range c {
		if d := v - o[k]; d != 0 {
			out[k] = d
		}
	}
	for k, v := range o {
		if _, ok := c[k]; !ok && v != 0 {
			out[k] = -v
		}
	}
	return out
}

// Total sums the counts whose key keep accepts; nil keeps all.
func (c Counts) Total(keep func(Key) bool) int64 {
	var n int64
	for k, v := range c {
		if keep == nil || keep(k) {
			n += v
		}
	}
	return n
}

// Sorted lists the kinds, most requests first, then by name.
func (c Counts) Sorted() []Key {
	keys := make([]Key, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b Key) int {
		return cmp.Or(cmp.Compare(c[b], c[a]), cmp.Compare(a.String(), b.String()))
	})
	return keys
}

// String is "3 PATCH managedcollectors/status, 1 POST events", or "none".
func (c Counts) String() string {
	var parts []string
	for _, k := range c.Sorted() {
		parts = append(parts, fmt.Sprintf("%d %s", c[k], k))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// Recorder counts the requests of the clients whose transport it wraps, as the API server would: a
// watch when it ends, as the server counts a long-running request when it completes.
type Recorder struct {
	mu     sync.Mutex
	counts Counts
}

// NewRecorder returns a Recorder that has counted nothing.
func NewRecorder() *Recorder { return &Recorder{counts: Counts{}} }

// Wrap is for rest.Config.Wrap: the returned transport counts into r what goes through it to rt.
func (r *Recorder) Wrap(rt http.RoundTripper) http.RoundTripper {
	return &recording{next: rt, rec: r}
}

type recording struct {
	next http.RoundTripper
	rec  *Recorder
}

// RoundTrip implements http.RoundTripper.
func (t *recording) RoundTrip(req *http.Request) (*http.Response, error) {
	k, ok := Classify(req)
	resp, err := t.next.RoundTrip(req)
	if !ok || err != nil {
		return resp, err
	}
	if k.Verb == "WATCH" {
		resp.Body = &countOnClose{ReadCloser: resp.Body, done: func() { t.rec.add(k) }}
		return resp, nil
	}
	t.rec.add(k)
	return resp, nil
}

func (r *Recorder) add(k Key) {
	r.mu.Lock()
	r.counts[k]++
	r.mu.Unlock()
}

// Counts is a copy of what was counted so far.
func (r *Recorder) Counts() Counts {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(Counts, len(r.counts))
	for k, v := range r.counts {
		out[k] = v
	}
	return out
}

type countOnClose struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (c *countOnClose) Close() error {
	c.once.Do(c.done)
	return c.ReadCloser.Close()
}

// Classify names a request to the API server as apiserver_request_total does; ok is false for requests
// that name no resource.
func Classify(req *http.Request) (Key, bool) {
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	var rest []string
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		rest = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		rest = parts[3:]
	default:
		return Key{}, false
	}
	if len(rest) >= 1 && rest[0] == "watch" {
		// The old /watch/ path prefix.
		rest = rest[1:]
	}
	if len(rest) >= 3 && rest[0] == "namespaces" {
		// A namespaced resource; namespaces/NAME alone is the namespace itself.
		rest = rest[2:]
	}
	if len(rest) == 0 || rest[0] == "" {
		return Key{}, false
	}
	k := Key{Resource: rest[0]}
	named := len(rest) >= 2
	if len(rest) >= 3 {
		k.Subresource = rest[2]
	}
	switch req.Method {
	case http.MethodGet:
		switch {
		case req.URL.Query().Get("watch") == "true" || req.URL.Query().Get("watch") == "1" || strings.Contains(req.URL.Path, "/watch/"):
			k.Verb = "WATCH"
		case named:
			k.Verb = "GET"
		default:
			k.Verb = "LIST"
		}
	case http.MethodPatch:
		k.Verb = "PATCH"
		if strings.HasPrefix(req.Header.Get("Content-Type"), string(types.ApplyPatchType)) ||
			strings.HasPrefix(req.Header.Get("Content-Type"), string(types.ApplyCBORPatchType)) {
			k.Verb = "APPLY"
		}
	case http.MethodDelete:
		k.Verb = "DELETE"
		if !named {
			k.Verb = "DELETECOLLECTION"
		}
	default:
		k.Verb = req.Method
	}
	return k, true
}
