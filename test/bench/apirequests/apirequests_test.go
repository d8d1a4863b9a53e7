package apirequests_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/linkmesh/linkmesh-operator/test/bench/apirequests"
)

// exposition is apiserver_request_total as kube-apiserver writes it (labels abridged to those it has).
const exposition = `# HELP apiserver_request_total [STABLE] Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="secrets",scope="resource",subresource="",verb="APPLY",version="v1"} 3
apiserver_request_total{code="409",component="apiserver",dry_run="",group="",resource="secrets",scope="resource",subresource="",verb="APPLY",version="v1"} 1
apiserver_request_total{code="200",component="apiserver",dry_run="",group="collectors.linkmesh.io",resource="managedcollectors",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} 7
apiserver_request_total{code="201",component="apiserver",dry_run="",group="events.k8s.io",resource="events",scope="resource",subresource="",verb="POST",version="v1"} 2
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="events",scope="resource",subresource="",verb="POST",version="v1"} 1
apiserver_request_total{code="200",component="",dry_run="",group="",resource="",scope="",subresource="/metrics",verb="GET",version=""} 40
# HELP apiserver_request_duration_seconds whatever
# TYPE apiserver_request_duration_seconds histogram
apiserver_request_duration_seconds_bucket{verb="GET",le="+Inf"} 1
apiserver_request_duration_seconds_sum{verb="GET"} 0.1
apiserver_request_duration_seconds_count{verb="GET"} 1
`

func TestParseSumsOverCodesAndGroups(t *testing.T) {
	g := NewWithT(t)
	c, err := apirequests.Parse(strings.NewReader(exposition))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c).To(Equal(apirequests.Counts{
		{Verb: "APPLY", Resource: "secrets"}:                                  4,
		{Verb: "PATCH", Resource: "managedcollectors", Subresource: "status"}: 7,
		{Verb: "POST", Resource: "events"}:                                    3,
	}))
	g.Expect(c.String()).To(Equal("7 PATCH managedcollectors/status, 4 APPLY secrets, 3 POST events"))
	g.Expect(c.Total(apirequests.Key.Write)).To(Equal(int64(14)))
}

func TestParseRefusesWhatIsNotTheAPIServers(t *testing.T) {
	g := NewWithT(t)
	_, err := apirequests.Parse(strings.NewReader("up 1\n"))
	g.Expect(err).To(MatchError(ContainSubstring("no apiserver_request_total")))
	_, err = apirequests.Parse(strings.NewReader("apiserver_request_total{verb=\"GET\" 1\n"))
	g.Expect(err).To(MatchError(ContainSubstring("parsing the API server's metrics")))
}

func TestSub(t *testing.T) {
	g := NewWithT(t)
	a := apirequests.Key{Verb: "GET", Resource: "secrets"}
	b := apirequests.Key{Verb: "LIST", Resource: "secrets"}
	later := apirequests.Counts{a: 5, b: 2}
	earlier := apirequests.Counts{a: 3, b: 2}
	g.Expect(later.Sub(earlier)).To(Equal(apirequests.Counts{a: 2}))
	g.Expect(apirequests.Counts{}.Sub(apirequests.Counts{}).String()).To(Equal("none"))
}

func TestClassify(t *testing.T) {
	cases := []struct {
		method, url, contentType string
		want                     string
	}{
		{"GET", "/api/v1/namespaces/ns/secrets/s", "", "GET secrets"},
		{"GET", "/api/v1/namespaces/ns/secrets", "", "LIST secrets"},
		{"GET", "/api/v1/secrets?watch=true&resourceVersion=1", "", "WATCH secrets"},
		{"GET", "/apis/collectors.linkmesh.io/v1alpha1/namespaces/ns/managedcollectors?watch=1", "", "WATCH managedcollectors"},
		{"PATCH", "/apis/collectors.linkmesh.io/v1alpha1/namespaces/ns/managedcollectors/mc/status", "application/merge-patch+json", "PATCH managedcollectors/status"},
		{"PATCH", "/apis/apps/v1/namespaces/ns/daemonsets/d?fieldManager=x&force=true", "application/apply-patch+yaml", "APPLY daemonsets"},
		{"POST", "/api/v1/namespaces", "", "POST namespaces"},
		{"GET", "/api/v1/namespaces/ns", "", "GET namespaces"},
		{"POST", "/apis/events.k8s.io/v1/namespaces/ns/events", "", "POST events"},
		{"DELETE", "/api/v1/namespaces/ns/configmaps/c", "", "DELETE configmaps"},
		{"DELETE", "/api/v1/namespaces/ns/configmaps", "", "DELETECOLLECTION configmaps"},
		{"PUT", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/l", "", "PUT leases"},
		{"GET", "/metrics", "", ""},
		{"GET", "/apis/apps/v1", "", ""},
	}
	for _, c := range cases {
		t.Run(c.method+" "+c.url, func(t *testing.T) {
			req := httptest.NewRequest(c.method, c.url, nil)
			req.Header.Set("Content-Type", c.contentType)
			k, ok := apirequests.Classify(req)
			if c.want == "" {
				if ok {
					t.Fatalf("Classify = %v, want no resource", k)
				}
				return
			}
			if !ok || k.String() != c.want {
				t.Fatalf("Classify = %v, %v; want %s", k, ok, c.want)
			}
		})
	}
}

// TestRecorderCountsAWatchWhenItEnds: a request is counted once answered, a watch once its body closes.
func TestRecorderCountsAWatchWhenItEnds(t *testing.T) {
	g := NewWithT(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "{}") }))
	defer srv.Close()
	rec := apirequests.NewRecorder()
	c := &http.Client{Transport: rec.Wrap(http.DefaultTransport)}
	get := func(path string) *http.Response {
		resp, err := c.Get(srv.URL + path)
		g.Expect(err).NotTo(HaveOccurred())
		return resp
	}
	_ = get("/api/v1/namespaces/ns/secrets/s").Body.Close()
	_ = get("/metrics").Body.Close()
	watch := get("/api/v1/namespaces/ns/secrets?watch=true")
	g.Expect(rec.Counts()).To(Equal(apirequests.Counts{{Verb: "GET", Resource: "secrets"}: 1}))
	_ = watch.Body.Close()
	_ = watch.Body.Close()
	g.Expect(rec.Counts()).To(Equal(apirequests.Counts{{Verb: "GET", Resource: "secrets"}: 1, {Verb: "WATCH", Resource: "secrets"}: 1}))
}
