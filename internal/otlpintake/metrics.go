package otlpintake

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/fleet"
)

// Throughputs is what the Prometheus collector reads; fleet.Registry is one.
type Throughputs interface {
	Throughputs() map[types.NamespacedName]*fleet.GroupThroughput
}

var (
	descReporting = prometheus.NewDesc("linkmesh_collector_reporting",
		"Connected collectors of the ManagedCollector whose own metrics arrived recently.",
		[]string{"namespace", "name"}, nil)
	descItems = prometheus.NewDesc("linkmesh_collector_items_per_second",
		"Items per second of the ManagedCollector's collectors, by signal and outcome (accepted, refused, sent, failed).",
		[]string{"namespace", "name", "signal", "outcome"}, nil)
	descComponent = prometheus.NewDesc("linkmesh_collector_component_items_per_second",
		"Items per second of one receiver or exporter, summed over the ManagedCollector's collectors.",
		[]string{"namespace", "name", "kind", "component", "signal", "outcome"}, nil)
	descQueueSize = prometheus.NewDesc("linkmesh_collector_exporter_queue_size",
		"Sending queue size of an exporter, summed over the ManagedCollector's collectors.",
		[]string{"namespace", "name", "component", "signal"}, nil)
	descQueueCapacity = prometheus.NewDesc("linkmesh_collector_exporter_queue_capacity",
		"Sending queue capacity of an exporter, summed over the ManagedCollector's collectors.",
		[]string{"namespace", "name", "component", "signal"}, nil)
)

// ThroughputMetrics exports the fleet's throughput as linkmesh_collector_* gauges, read at scrape time: series of
// deleted ManagedCollectors and silent components disappear by themselves. Labels are per ManagedCollector
// and per component (at most v1alpha1.MaxComponentsInStatus of them), never per agent.
type ThroughputMetrics struct {
	fleet Throughputs
}

// NewThroughputMetrics returns the Prometheus collector of the throughput; register it with
// controller-runtime's metrics.Registry. (A Prometheus "collector", not an OpenTelemetry one.)
func NewThroughputMetrics(f Throughputs) *ThroughputMetrics { return &ThroughputMetrics{fleet: f} }

// Describe implements prometheus.Collector.
func (c *ThroughputMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descReporting, descItems, descComponent, descQueueSize, descQueueCapacity} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *ThroughputMetrics) Collect(ch chan<- prometheus.Metric) {
	for key, t := range c.fleet.Throughputs() {
		ns, name := key.Namespace, key.Name
		ch <- prometheus.MustNewConstMetric(descReporting, prometheus.GaugeValue, float64(t.Reporting), ns, name)
		for signal, outcomes := range t.Rates {
			for outcome, v := range outcomes {
				ch <- prometheus.MustNewConstMetric(descItems, prometheus.GaugeValue, v, ns, name, label(signal), string(outcome))
			}
		}
		for i, comp := range t.Components {
			if i >= v1alpha1.MaxComponentsInStatus {
				break
			}
			kind := strings.ToLower(string(comp.Kind))
			if comp.HasRate {
				ok, bad := fleet.OutcomeAccepted, fleet.OutcomeRefused
				if comp.Kind == v1alpha1.ComponentExporter {
					ok, bad = fleet.OutcomeSent, fleet.OutcomeFailed
				}
				ch <- prometheus.MustNewConstMetric(descComponent, prometheus.GaugeValue, comp.Rate, ns, name, kind, comp.Component, label(comp.Signal), string(ok))
				ch <- prometheus.MustNewConstMetric(descComponent, prometheus.GaugeValue, comp.ErrorRate, ns, name, kind, comp.Component, label(comp.Signal), string(bad))
			}
			if comp.HasQueue {
				ch <- prometheus.MustNewConstMetric(descQueueSize, prometheus.GaugeValue, comp.QueueSize, ns, name, comp.Component, label(comp.Signal))
				ch <- prometheus.MustNewConstMetric(descQueueCapacity, prometheus.GaugeValue, comp.QueueCapacity, ns, name, comp.Component, label(comp.Signal))
			}
		}
	}
}

// label is the signal as a Prometheus label value: spans, metric_points, log_records.
func label(s v1alpha1.TelemetrySignal) string {
	switch s {
	case v1alpha1.SignalSpans:
		return "spans"
	case v1alpha1.SignalMetricPoints:
		return "metric_points"
	case v1alpha1.SignalLogRecords:
		return "log_records"
	default:
		return ""
	}
}
