//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
	"github.com/linkmesh/linkmesh-operator/test/framework/otlptest"
)

// exportWait covers the supervisor's fixed own-metrics interval: the collector's first export comes about
// 60 s after it starts (the supervisor's template sets no interval, so the SDK's 60 s default applies), plus
// the restart that applying the offer causes.
const exportWait = 150 * time.Second

// TestOwnMetricsShowThroughput: the real supervisor takes the own_metrics offer, its collector pushes its
// internal metrics to /v1/metrics with the offered bearer, and status.throughput shows the spans sent.
func TestOwnMetricsShowThroughput(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	out := otlptest.NewSink(t)
	port := freePort(t)
	createCollector(t, ns, "metered", v1alpha1.ManagedCollectorSpec{Config: otlptest.Pipeline(port, out.URL, "")})

	start := time.Now()
	node, _ := startNode(t, ns, "metered", nodeDir(t, "metered"))
	g.Eventually(func(g Gomega) {
		g.Expect(eventsOf(g, ns, "metered")).To(ContainElement(HaveField("Reason", v1alpha1.EventOwnMetricsOffered)))
	}, timeout, interval).Should(Succeed())
	offered := time.Since(start)

	// The supervisor wrote the offer, bearer included, into the collector's config.
	sec := &corev1.Secret{}
	g.Expect(env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: naming.CredentialsSecret("metered")}, sec)).To(Succeed())
	token := string(sec.Data[naming.OwnMetricsTokenKey])
	g.Expect(token).NotTo(BeEmpty())
	g.Eventually(func(g Gomega) {
		effective, err := os.ReadFile(filepath.Join(node.StorageDir(), "effective.yaml"))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(string(effective)).To(ContainSubstring("/v1/metrics"))
		g.Expect(strings.Contains(string(effective), "Bearer "+token)).To(BeTrue(), "the offered bearer is in the effective config")
	}, timeout, interval).Should(Succeed())

	// Spans through the pipeline, before the first export.
	const spans = 30
	for i := 0; i < spans; i++ {
		g.Eventually(func() error { return otlptest.SendSpan(port) }, timeout, interval).Should(Succeed())
	}
	g.Eventually(out.Traces, timeout, interval).Should(BeNumerically(">=", 1))
	sent := time.Now()

	var th *v1alpha1.ThroughputStatus
	var arrived time.Duration
	g.Eventually(func(g Gomega) {
		th = getMC(g, ns, "metered").Status.Throughput
		g.Expect(th).NotTo(BeNil())
		if arrived == 0 {
			arrived = time.Since(start)
		}
		g.Expect(th.Spans).NotTo(BeNil())
		g.Expect(th.Spans.Accepted).NotTo(BeNil())
		g.Expect(th.Spans.Accepted.IsZero()).To(BeFalse())
	}, exportWait, time.Second).Should(Succeed())
	t.Logf("MEASURE supervisor start -> OwnMetricsOffered: %v; -> first own metrics in status: %v; spans sent -> accepted>0: %v",
		offered, arrived, time.Since(sent))
	t.Logf("throughput: reporting=%d spans accepted=%s sent=%s components=%d", th.Reporting, th.Spans.Accepted, th.Spans.Sent, len(th.Components))
	g.Expect(th.Reporting).To(BeEquivalentTo(1))
	g.Expect(th.Spans.Sent).NotTo(BeNil())
	g.Expect(th.Spans.Sent.IsZero()).To(BeFalse())
	g.Expect(th.Components).To(ContainElement(And(
		HaveField("Kind", v1alpha1.ComponentReceiver), HaveField("Name", "otlp"), HaveField("Signal", v1alpha1.SignalSpans))))
	g.Expect(th.Components).To(ContainElement(And(
		HaveField("Kind", v1alpha1.ComponentExporter), HaveField("Name", "otlp_http"), HaveField("Signal", v1alpha1.SignalSpans))))
}

// TestOwnMetricsFalseOffersNoDestination: with spec.supervisor.ownMetrics=false the real supervisor takes the
// withdrawal without a fuss (no restart loop, Ready) and its collector gets no own-metrics exporter.
func TestOwnMetricsFalseOffersNoDestination(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	out := otlptest.NewSink(t)
	port := freePort(t)
	off := false
	createCollector(t, ns, "unmetered", v1alpha1.ManagedCollectorSpec{
		Config: otlptest.Pipeline(port, out.URL, ""), Supervisor: v1alpha1.SupervisorSpec{OwnMetrics: &off},
	})
	node, _ := startNode(t, ns, "unmetered", nodeDir(t, "unmetered"))
	g.Eventually(func(g Gomega) {
		mc := getMC(g, ns, "unmetered")
		g.Expect(cond(mc, v1alpha1.ConditionReady).Status).To(BeEquivalentTo("True"), cond(mc, v1alpha1.ConditionReady).Message)
	}, timeout, interval).Should(Succeed())
	g.Eventually(func() error { return otlptest.SendSpan(port) }, timeout, interval).Should(Succeed())
	effective, err := os.ReadFile(filepath.Join(node.StorageDir(), "effective.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(effective)).NotTo(ContainSubstring("/v1/metrics"))
	g.Expect(eventsOf(g, ns, "unmetered")).NotTo(ContainElement(HaveField("Reason", v1alpha1.EventOwnMetricsOffered)))
	g.Expect(getMC(g, ns, "unmetered").Status.Throughput).To(BeNil())
}
