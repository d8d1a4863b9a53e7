package otlpintake

import (
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/fleet"
)

// counter is what a collector internal metric name means.
type counter struct {
	kind    v1alpha1.ComponentKind
	signal  v1alpha1.TelemetrySignal
	outcome fleet.Outcome
}

// counters are the collector's internal metrics the throughput uses, by name without the otelcol_ prefix
// and the _total suffix Prometheus naming adds.
var counters = func() map[string]counter {
	m := map[string]counter{
		"exporter_queue_size":     {kind: v1alpha1.ComponentExporter, outcome: fleet.OutcomeQueueSize},
		"exporter_queue_capacity": {kind: v1alpha1.ComponentExporter, outcome: fleet.OutcomeQueueCapacity},
	}
	for suffix, signal := range map[string]v1alpha1.TelemetrySignal{
		"spans": v1alpha1.SignalSpans, "metric_points": v1alpha1.SignalMetricPoints, "log_records": v1alpha1.SignalLogRecords,
	} {
		m["receiver_accepted_"+suffix] = counter{v1alpha1.ComponentReceiver, signal, fleet.OutcomeAccepted}
		m["receiver_refused_"+suffix] = counter{v1alpha1.ComponentReceiver, signal, fleet.OutcomeRefused}
		m["exporter_sent_"+suffix] = counter{v1alpha1.ComponentExporter, signal, fleet.OutcomeSent}
		m["exporter_send_failed_"+suffix] = counter{v1alpha1.ComponentExporter, signal, fleet.OutcomeFailed}
	}
	return m
}()

// dataTypes maps the queue gauges' data_type attribute to a signal.
var dataTypes = map[string]v1alpha1.TelemetrySignal{
	"traces": v1alpha1.SignalSpans, "metrics": v1alpha1.SignalMetricPoints, "logs": v1alpha1.SignalLogRecords,
}

func lookup(name string) (counter, bool) {
	name = strings.TrimPrefix(strings.TrimPrefix(name, "otelcol_"), "otelcol.")
	c, ok := counters[strings.TrimSuffix(name, "_total")]
	return c, ok
}

// Samples extracts the throughput counters and queue gauges of one resource. Other metrics, delta sums
// and points without a component attribute are skipped.
func Samples(rm pmetric.ResourceMetrics) []fleet.Sample {
	var out []fleet.Sample
	sms := rm.ScopeMetrics()
	for i := 0; i < sms.Len(); i++ {
		ms := sms.At(i).Metrics()
		for j := 0; j < ms.Len(); j++ {
			m := ms.At(j)
			c, ok := lookup(m.Name())
			if !ok {
				continue
			}
			var points pmetric.NumberDataPointSlice
			switch m.Type() {
			case pmetric.MetricTypeSum:
				if m.Sum().AggregationTemporality() != pmetric.AggregationTemporalityCumulative {
					continue
				}
				points = m.Sum().DataPoints()
			case pmetric.MetricTypeGauge:
				points = m.Gauge().DataPoints()
			default:
				continue
			}
			attr := "receiver"
			if c.kind == v1alpha1.ComponentExporter {
				attr = "exporter"
			}
			for k := 0; k < points.Len(); k++ {
				p := points.At(k)
				comp, ok := p.Attributes().Get(attr)
				if !ok || comp.AsString() == "" {
					continue
				}
				s := fleet.Sample{
					Kind: c.kind, Component: comp.AsString(), Signal: c.signal, Outcome: c.outcome,
					Value: value(p), Start: timeOf(p.StartTimestamp()), Time: timeOf(p.Timestamp()),
				}
				if s.Signal == "" {
					if dt, ok := p.Attributes().Get("data_type"); ok {
						s.Signal = dataTypes[dt.AsString()]
					}
				}
				if s.Time.IsZero() {
					continue
				}
				out = append(out, s)
			}
		}
	}
	return out
}

func value(p pmetric.NumberDataPoint) float64 {
	if p.ValueType() == pmetric.NumberDataPointValueTypeInt {
		return float64(p.IntValue())
	}
	return p.DoubleValue()
}

func timeOf(ts pcommon.Timestamp) time.Time {
	if ts == 0 {
		return time.Time{}
	}
	return ts.AsTime()
}

// dataPoints counts a resource's data points, for partial success.
func dataPoints(rm pmetric.ResourceMetrics) int {
	n := 0
	sms := rm.ScopeMetrics()
	for i := 0; i < sms.Len(); i++ {
		ms := sms.At(i).Metrics()
		for j := 0; j < ms.Len(); j++ {
			m := ms.At(j)
			switch m.Type() {
			case pmetric.MetricTypeSum:
				n += m.Sum().DataPoints().Len()
			case pmetric.MetricTypeGauge:
				n += m.Gauge().DataPoints().Len()
			case pmetric.MetricTypeHistogram:
				n += m.Histogram().DataPoints().Len()
			case pmetric.MetricTypeExponentialHistogram:
				n += m.ExponentialHistogram().DataPoints().Len()
			case pmetric.MetricTypeSummary:
				n += m.Summary().DataPoints().Len()
			}
		}
	}
	return n
}
