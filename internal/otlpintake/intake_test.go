package otlpintake_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/credential"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
	"github.com/linkmesh/linkmesh-operator/test/framework/simagent"
	"github.com/linkmesh/linkmesh-operator/test/framework/testenv"
)

const (
	timeout  = 30 * time.Second
	interval = 50 * time.Millisecond
)

const config = `receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 0.0.0.0:4317
exporters:
  debug:
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
`

func newNamespace(t *testing.T) string { return testenv.Namespace(t, env.Client, "otlp") }

// collector creates a DaemonSet ManagedCollector (envtest schedules no pods, the tests play them) and
// returns its pods' OpAMP and own-metrics tokens.
func collector(t *testing.T, ns, name string, ownMetrics *bool) (opampToken, metricsToken string) {
	t.Helper()
	g := NewWithT(t)
	mc := &v1alpha1.ManagedCollector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.ManagedCollectorSpec{Config: config, Mode: v1alpha1.ModeDaemonSet,
			Supervisor: v1alpha1.SupervisorSpec{OwnMetrics: ownMetrics}},
	}
	g.Expect(env.Client.Create(context.Background(), mc)).To(Succeed())
	sec := &corev1.Secret{}
	g.Eventually(func(g Gomega) {
		g.Expect(env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: naming.CredentialsSecret(name)}, sec)).To(Succeed())
		g.Expect(sec.Data[naming.CollectorTokenKey]).NotTo(BeEmpty())
		g.Expect(sec.Data[naming.OwnMetricsTokenKey]).NotTo(BeEmpty())
	}, timeout, interval).Should(Succeed())
	return string(sec.Data[naming.CollectorTokenKey]), string(sec.Data[naming.OwnMetricsTokenKey])
}

func eventTimes(g Gomega, ns, name string) map[string]time.Time {
	list := &eventsv1.EventList{}
	g.Expect(env.Client.List(context.Background(), list, client.InNamespace(ns))).To(Succeed())
	out := map[string]time.Time{}
	for _, e := range list.Items {
		if e.Regarding.Name == name && e.Regarding.Kind == "ManagedCollector" {
			out[e.Reason] = e.EventTime.Time
		}
	}
	return out
}

func status(g Gomega, ns, name string) v1alpha1.ManagedCollectorStatus {
	mc := &v1alpha1.ManagedCollector{}
	g.Expect(env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, mc)).To(Succeed())
	return mc.Status
}

// selfMetrics is a collector's own-metrics export, built with pdata as the collector builds it: cumulative
// sums with a start time, one point per receiver transport.
func selfMetrics(instance string, start, at time.Time, accepted, sent int64) pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "otelcol-contrib")
	rm.Resource().Attributes().PutStr("service.instance.id", instance)
	ms := rm.ScopeMetrics().AppendEmpty().Metrics()
	sum := func(name, attr, comp string, v int64, extra map[string]string) {
		m := ms.AppendEmpty()
		m.SetName(name)
		s := m.SetEmptySum()
		s.SetIsMonotonic(true)
		s.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
		p := s.DataPoints().AppendEmpty()
		p.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
		p.SetTimestamp(pcommon.NewTimestampFromTime(at))
		p.SetIntValue(v)
		p.Attributes().PutStr(attr, comp)
		for k, v := range extra {
			p.Attributes().PutStr(k, v)
		}
	}
	sum("otelcol_receiver_accepted_spans", "receiver", "otlp", accepted, map[string]string{"transport": "grpc"})
	sum("otelcol_receiver_refused_spans", "receiver", "otlp", 0, map[string]string{"transport": "grpc"})
	sum("otelcol_exporter_sent_spans", "exporter", "debug", sent, nil)
	sum("otelcol_exporter_send_failed_spans", "exporter", "debug", 0, nil)
	sum("otelcol_process_uptime", "unrelated", "x", 5, nil)
	g := ms.AppendEmpty()
	g.SetName("otelcol_exporter_queue_capacity")
	p := g.SetEmptyGauge().DataPoints().AppendEmpty()
	p.SetTimestamp(pcommon.NewTimestampFromTime(at))
	p.SetIntValue(1000)
	p.Attributes().PutStr("exporter", "debug")
	p.Attributes().PutStr("data_type", "traces")
	return md
}

func protobufBody(t *testing.T, md pmetric.Metrics) []byte {
	t.Helper()
	b, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func jsonBody(t *testing.T, md pmetric.Metrics) []byte {
	t.Helper()
	b, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return buf.Bytes()
}

type request struct {
	method, token, contentType, encoding string
	body                                 []byte
}

// send posts to /v1/metrics and returns the status and, on 200, the decoded response.
func send(t *testing.T, r request) (int, pmetricotlp.ExportResponse) {
	t.Helper()
	if r.method == "" {
		r.method = http.MethodPost
	}
	if r.contentType == "" {
		r.contentType = "application/x-protobuf"
	}
	req, err := http.NewRequest(r.method, "http://"+addr+"/v1/metrics", bytes.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	req.Header.Set("Content-Type", r.contentType)
	if r.encoding != "" {
		req.Header.Set("Content-Encoding", r.encoding)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	out := pmetricotlp.NewExportResponse()
	if resp.StatusCode == http.StatusOK {
		if strings.HasPrefix(r.contentType, "application/json") {
			err = out.UnmarshalJSON(data)
		} else {
			err = out.UnmarshalProto(data)
		}
		if err != nil {
			t.Fatalf("decoding the response: %v", err)
		}
	}
	return resp.StatusCode, out
}

func TestOwnMetricsOfferedAndThroughputInStatusAndPrometheus(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	opampToken, metricsToken := collector(t, ns, "edge", nil)

	agent := simagent.Start(t, addr, opampToken, simagent.Options{Host: "node-a", OwnMetrics: true})
	g.Eventually(agent.OwnMetricsOffers, timeout, interval).Should(HaveLen(1))
	offer := agent.OwnMetricsOffers()[0]
	g.Expect(offer.DestinationEndpoint).To(Equal("http://" + addr + "/v1/metrics"))
	g.Expect(offer.Headers.GetHeaders()).To(HaveLen(1))
	g.Expect(offer.Headers.Headers[0].Key).To(Equal("Authorization"))
	g.Expect(offer.Headers.Headers[0].Value).To(Equal("Bearer " + metricsToken))
	g.Expect(metricsToken).NotTo(Equal(opampToken))

	var events map[string]time.Time
	g.Eventually(func(g Gomega) {
		events = eventTimes(g, ns, "edge")
		g.Expect(events).To(HaveKey(v1alpha1.EventRegistered))
		g.Expect(events).To(HaveKey(v1alpha1.EventOwnMetricsOffered))
	}, timeout, interval).Should(Succeed())
	lag := events[v1alpha1.EventOwnMetricsOffered].Sub(events[v1alpha1.EventRegistered])
	t.Logf("OwnMetricsOffered %v after Registered", lag)
	g.Expect(lag).To(BeNumerically("<=", 5*time.Second))

	// Two exports a minute apart in the collector's clock: 20 spans/s accepted, 19 sent.
	start := time.Now().Add(-2 * time.Minute).Truncate(time.Second)
	code, resp := send(t, request{token: metricsToken, body: protobufBody(t, selfMetrics(agent.UID.String(), start, start.Add(time.Minute), 100, 100))})
	g.Expect(code).To(Equal(http.StatusOK))
	g.Expect(resp.PartialSuccess().RejectedDataPoints()).To(BeZero())
	code, resp = send(t, request{token: metricsToken, encoding: "gzip",
		body: gzipped(protobufBody(t, selfMetrics(agent.UID.String(), start, start.Add(2*time.Minute), 1300, 1240)))})
	g.Expect(code).To(Equal(http.StatusOK))
	g.Expect(resp.PartialSuccess().RejectedDataPoints()).To(BeZero())

	var th *v1alpha1.ThroughputStatus
	g.Eventually(func(g Gomega) {
		th = status(g, ns, "edge").Throughput
		g.Expect(th).NotTo(BeNil())
		g.Expect(th.Spans).NotTo(BeNil())
		// The first export alone is rated since the start time: 100 spans in 60 s.
		g.Expect(th.Spans.Accepted.String()).To(Equal("20"))
	}, timeout, interval).Should(Succeed())
	g.Expect(th.Reporting).To(BeEquivalentTo(1))
	g.Expect(th.LastUpdated).NotTo(BeNil())
	g.Expect(th.Spans.Accepted.String()).To(Equal("20"))
	g.Expect(th.Spans.Refused.String()).To(Equal("0"))
	g.Expect(th.Spans.Sent.String()).To(Equal("19"))
	g.Expect(th.Spans.Failed.String()).To(Equal("0"))
	g.Expect(th.Components).To(ConsistOf(
		And(HaveField("Kind", v1alpha1.ComponentReceiver), HaveField("Name", "otlp"), HaveField("Signal", v1alpha1.SignalSpans),
			HaveField("Rate", HaveField("String()", "20"))),
		And(HaveField("Kind", v1alpha1.ComponentExporter), HaveField("Name", "debug"), HaveField("Signal", v1alpha1.SignalSpans),
			HaveField("Rate", HaveField("String()", "19")), HaveField("QueueCapacity", HaveValue(BeEquivalentTo(1000)))),
	))

	families, err := ctrlmetrics.Registry.Gather()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(gauge(families, "linkmesh_collector_items_per_second",
		map[string]string{"namespace": ns, "name": "edge", "signal": "spans", "outcome": "accepted"})).To(BeNumerically("~", 20, 1e-9))
	g.Expect(gauge(families, "linkmesh_collector_component_items_per_second",
		map[string]string{"namespace": ns, "name": "edge", "kind": "exporter", "component": "debug", "signal": "spans", "outcome": "sent"})).To(BeNumerically("~", 19, 1e-9))
	g.Expect(gauge(families, "linkmesh_collector_exporter_queue_capacity",
		map[string]string{"namespace": ns, "name": "edge", "component": "debug", "signal": "spans"})).To(BeNumerically("==", 1000))
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				g.Expect(l.GetValue()).NotTo(Equal(agent.UID.String()), "no per-agent label in %s", f.GetName())
			}
		}
	}

	// The same export again is a duplicate and changes nothing; JSON is accepted too.
	code, _ = send(t, request{token: metricsToken, contentType: "application/json",
		body: jsonBody(t, selfMetrics(agent.UID.String(), start, start.Add(2*time.Minute), 1300, 1240))})
	g.Expect(code).To(Equal(http.StatusOK))
	g.Consistently(func(g Gomega) {
		g.Expect(status(g, ns, "edge").Throughput.Spans.Accepted.String()).To(Equal("20"))
	}, 2*time.Second, 200*time.Millisecond).Should(Succeed())
}

func gauge(families []*dto.MetricFamily, name string, labels map[string]string) float64 {
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue metrics
				}
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

func TestOwnMetricsFalseWithdrawsAndTogglingOffers(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	opampToken, metricsToken := collector(t, ns, "quiet", ptr.To(false))
	// Plain HTTP polls every 50 ms, so a toggle reaches it with its next message.
	agent := simagent.Start(t, addr, opampToken, simagent.Options{Host: "node-b", OwnMetrics: true, HTTP: true})
	g.Eventually(agent.OwnMetricsOffers, timeout, interval).Should(HaveLen(1))
	g.Expect(agent.OwnMetricsOffers()[0].GetDestinationEndpoint()).To(BeEmpty(), "a withdrawal of any persisted offer")
	g.Eventually(func(g Gomega) {
		g.Expect(eventTimes(g, ns, "quiet")).To(HaveKey(v1alpha1.EventConfigApplied))
	}, timeout, interval).Should(Succeed())
	g.Expect(eventTimes(g, ns, "quiet")).NotTo(HaveKey(v1alpha1.EventOwnMetricsOffered))
	start := time.Now().Add(-time.Minute)
	code, resp := send(t, request{token: metricsToken, body: protobufBody(t, selfMetrics(agent.UID.String(), start, start.Add(time.Minute), 1, 1))})
	g.Expect(code).To(Equal(http.StatusOK))
	g.Expect(resp.PartialSuccess().RejectedDataPoints()).To(BeEquivalentTo(6))
	g.Expect(resp.PartialSuccess().ErrorMessage()).To(ContainSubstring("disabled"))

	setOwnMetrics := func(on bool) {
		// The operator writes status meanwhile; an update retries on the conflict, as kubectl edit would.
		g.Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
			mc := &v1alpha1.ManagedCollector{}
			if err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "quiet"}, mc); err != nil {
				return err
			}
			mc.Spec.Supervisor.OwnMetrics = ptr.To(on)
			return env.Client.Update(ctx, mc)
		})).To(Succeed())
	}
	setOwnMetrics(true)
	g.Eventually(agent.OwnMetricsOffers, timeout, interval).Should(HaveLen(2))
	g.Expect(agent.OwnMetricsOffers()[1].GetDestinationEndpoint()).To(Equal("http://" + addr + "/v1/metrics"))
	g.Eventually(func(g Gomega) {
		g.Expect(eventTimes(g, ns, "quiet")).To(HaveKey(v1alpha1.EventOwnMetricsOffered))
	}, timeout, interval).Should(Succeed())

	setOwnMetrics(false)
	g.Eventually(agent.OwnMetricsOffers, timeout, interval).Should(HaveLen(3))
	g.Expect(agent.OwnMetricsOffers()[2].GetDestinationEndpoint()).To(BeEmpty())
}

func TestHostsGetTheirOwnToken(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	podToken, podMetricsToken := collector(t, ns, "mixed", nil)
	et := &v1alpha1.EnrollmentToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "host-a"},
		Spec:       v1alpha1.EnrollmentTokenSpec{CollectorRef: v1alpha1.CollectorReference{Name: "mixed"}},
	}
	g.Expect(env.Client.Create(ctx, et)).To(Succeed())
	sec := &corev1.Secret{}
	g.Eventually(func(g Gomega) {
		g.Expect(env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: naming.TokenSecret("host-a")}, sec)).To(Succeed())
		g.Expect(sec.Data[v1alpha1.TokenSecretKey]).NotTo(BeEmpty())
	}, timeout, interval).Should(Succeed())
	enrollment := string(sec.Data[v1alpha1.TokenSecretKey])

	host := simagent.Start(t, addr, enrollment, simagent.Options{Host: "host-a", OwnMetrics: true})
	pod := simagent.Start(t, addr, podToken, simagent.Options{Host: "node-a", OwnMetrics: true})
	g.Eventually(host.OwnMetricsOffers, timeout, interval).Should(HaveLen(1))
	g.Eventually(pod.OwnMetricsOffers, timeout, interval).Should(HaveLen(1))
	hostMetricsToken := credential.HostOwnMetricsToken(enrollment)
	g.Expect(host.OwnMetricsOffers()[0].Headers.Headers[0].Value).To(Equal("Bearer " + hostMetricsToken))
	g.Expect(hostMetricsToken).NotTo(Or(Equal(enrollment), Equal(podMetricsToken)))

	start := time.Now().Add(-time.Minute)
	body := func(a *simagent.Agent) []byte {
		return protobufBody(t, selfMetrics(a.UID.String(), start, start.Add(time.Minute), 1, 1))
	}
	for _, c := range []struct {
		name     string
		token    string
		agent    *simagent.Agent
		rejected int64
	}{
		{"host posts as itself", hostMetricsToken, host, 0},
		{"pods' token posts as a pod", podMetricsToken, pod, 0},
		{"host cannot post as a pod", hostMetricsToken, pod, 6},
		{"pods' token cannot post as the host", podMetricsToken, host, 6},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			code, resp := send(t, request{token: c.token, body: body(c.agent)})
			g.Expect(code).To(Equal(http.StatusOK))
			g.Expect(resp.PartialSuccess().RejectedDataPoints()).To(Equal(c.rejected))
			if c.rejected > 0 {
				g.Expect(resp.PartialSuccess().ErrorMessage()).To(ContainSubstring("not a collector this token may report for"))
			}
		})
	}
}

func TestAuthAndBadBodies(t *testing.T) {
	ns := newNamespace(t)
	opampToken, metricsToken := collector(t, ns, "a", nil)
	otherOpAMP, otherMetrics := collector(t, ns, "b", nil)
	agent := simagent.Start(t, addr, opampToken, simagent.Options{Host: "node-a", OwnMetrics: true})
	other := simagent.Start(t, addr, otherOpAMP, simagent.Options{Host: "node-b", OwnMetrics: true})
	NewWithT(t).Eventually(func() int { return len(agent.OwnMetricsOffers()) + len(other.OwnMetricsOffers()) }, timeout, interval).Should(Equal(2))

	now := time.Now()
	good := protobufBody(t, selfMetrics(agent.UID.String(), now.Add(-time.Minute), now, 1, 1))
	big := bytes.Repeat([]byte{0}, 5<<20)
	noInstance := pmetric.NewMetrics()
	noInstance.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty().SetEmptyGauge().DataPoints().AppendEmpty()
	for _, c := range []struct {
		name     string
		req      request
		code     int
		rejected int64
	}{
		{"no bearer", request{body: good}, http.StatusUnauthorized, 0},
		{"unknown bearer", request{token: "lmm_nope", body: good}, http.StatusUnauthorized, 0},
		{"OpAMP credential is not an own-metrics token", request{token: opampToken, body: good}, http.StatusUnauthorized, 0},
		{"random instance UID", request{token: metricsToken, body: protobufBody(t, selfMetrics(uuid.NewString(), now.Add(-time.Minute), now, 1, 1))}, http.StatusOK, 6},
		{"collector B's token cannot post as A", request{token: otherMetrics, body: good}, http.StatusOK, 6},
		{"no service.instance.id", request{token: metricsToken, body: protobufBody(t, noInstance)}, http.StatusOK, 1},
		{"valid protobuf", request{token: metricsToken, body: good}, http.StatusOK, 0},
		{"valid gzip json", request{token: metricsToken, contentType: "application/json; charset=utf-8", encoding: "gzip",
			body: gzipped(jsonBody(t, selfMetrics(agent.UID.String(), now.Add(-time.Minute), now, 1, 1)))}, http.StatusOK, 0},
		{"garbage protobuf", request{token: metricsToken, body: []byte("\xff\xff\xff not protobuf")}, http.StatusBadRequest, 0},
		{"garbage json", request{token: metricsToken, contentType: "application/json", body: []byte("{nope")}, http.StatusBadRequest, 0},
		{"bad gzip", request{token: metricsToken, encoding: "gzip", body: good}, http.StatusBadRequest, 0},
		{"unsupported encoding", request{token: metricsToken, encoding: "br", body: good}, http.StatusUnsupportedMediaType, 0},
		{"unsupported content type", request{token: metricsToken, contentType: "text/plain", body: good}, http.StatusUnsupportedMediaType, 0},
		{"too large", request{token: metricsToken, body: big}, http.StatusRequestEntityTooLarge, 0},
		{"too large after gzip", request{token: metricsToken, encoding: "gzip", body: gzipped(big)}, http.StatusRequestEntityTooLarge, 0},
		{"GET", request{method: http.MethodGet, token: metricsToken}, http.StatusMethodNotAllowed, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			code, resp := send(t, c.req)
			g.Expect(code).To(Equal(c.code))
			if code == http.StatusOK {
				g.Expect(resp.PartialSuccess().RejectedDataPoints()).To(Equal(c.rejected))
			}
		})
	}
}
