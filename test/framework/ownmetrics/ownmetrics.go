// Package ownmetrics plays a collector's own-metrics export in tests: the cumulative otelcol_* counters
// and queue gauges the collector pushes to the operator's /v1/metrics, built with pdata as the collector
// builds them, and posted with the destination and token the OpAMP server offered.
package ownmetrics

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/open-telemetry/opamp-go/protobufs"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
)

// Signal is a counter name's signal suffix: spans, metric_points or log_records.
type Signal string

// Signals of the collector's counters.
const (
	Spans        Signal = "spans"
	MetricPoints Signal = "metric_points"
	LogRecords   Signal = "log_records"
)

// dataType is the queue gauges' data_type attribute of a signal.
var dataType = map[Signal]string{Spans: "traces", MetricPoints: "metrics", LogRecords: "logs"}

// Receiver is one receiver's cumulative counts of one signal.
type Receiver struct {
	Name              string
	Signal            Signal
	Accepted, Refused int64
}

// Exporter is one exporter's cumulative counts of one signal, and its sending queue when QueueCapacity > 0.
type Exporter struct {
	Name                     string
	Signal                   Signal
	Sent, Failed             int64
	QueueSize, QueueCapacity int64
}

// Export is what one collector pushes at one time.
type Export struct {
	// Instance is the collector's service.instance.id, the agent's OpAMP instance UID.
	Instance string
	// Start is the counters' start time (the collector's start), At the export's time.
	Start, At time.Time
	Receivers []Receiver
	Exporters []Exporter
}

// Metrics is the export as pdata.
func (e Export) Metrics() pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "otelcol-contrib")
	rm.Resource().Attributes().PutStr("service.instance.id", e.Instance)
	ms := rm.ScopeMetrics().AppendEmpty().Metrics()
	sum := func(name, attr, comp string, v int64) {
		m := ms.AppendEmpty()
		m.SetName(name)
		s := m.SetEmptySum()
		s.SetIsMonotonic(true)
		s.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
		p := s.DataPoints().AppendEmpty()
		p.SetStartTimestamp(pcommon.NewTimestampFromTime(e.Start))
		p.SetTimestamp(pcommon.NewTimestampFromTime(e.At))
		p.SetIntValue(v)
		p.Attributes().PutStr(attr, comp)
	}
	gauge := func(name, exporter string, signal Signal, v int64) {
		m := ms.AppendEmpty()
		m.SetName(name)
		p := m.SetEmptyGauge().DataPoints().AppendEmpty()
		p.SetTimestamp(pcommon.NewTimestampFromTime(e.At))
		p.SetIntValue(v)
		p.Attributes().PutStr("exporter", exporter)
		p.Attributes().PutStr("data_type", dataType[signal])
	}
	for _, r := range e.Receivers {
		sum("otelcol_receiver_accepted_"+string(r.Signal), "receiver", r.Name, r.Accepted)
		sum("otelcol_receiver_refused_"+string(r.Signal), "receiver", r.Name, r.Refused)
	}
	for _, x := range e.Exporters {
		sum("otelcol_exporter_sent_"+string(x.Signal), "exporter", x.Name, x.Sent)
		sum("otelcol_exporter_send_failed_"+string(x.Signal), "exporter", x.Name, x.Failed)
		if x.QueueCapacity > 0 {
			gauge("otelcol_exporter_queue_size", x.Name, x.Signal, x.QueueSize)
			gauge("otelcol_exporter_queue_capacity", x.Name, x.Signal, x.QueueCapacity)
		}
	}
	return md
}

// Destination is where a collector pushes, from the OpAMP server's own_metrics offer.
type Destination struct {
	Endpoint      string
	Authorization string
}

// FromOffer reads the destination of an own_metrics offer.
func FromOffer(offer *protobufs.TelemetryConnectionSettings) Destination {
	d := Destination{Endpoint: offer.GetDestinationEndpoint()}
	for _, h := range offer.GetHeaders().GetHeaders() {
		if h.GetKey() == "Authorization" {
			d.Authorization = h.GetValue()
		}
	}
	return d
}

// Post sends the export as OTLP/HTTP protobuf and fails unless every point was accepted.
func (d Destination) Post(e Export) error {
	body, err := pmetricotlp.NewExportRequestFromMetrics(e.Metrics()).MarshalProto()
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodPost, d.Endpoint, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Authorization", d.Authorization)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: %s: %s", d.Endpoint, resp.Status, data)
	}
	out := pmetricotlp.NewExportResponse()
	if err := out.UnmarshalProto(data); err != nil {
		return fmt.Errorf("decoding the response: %w", err)
	}
	if n := out.PartialSuccess().RejectedDataPoints(); n > 0 {
		return fmt.Errorf("POST %s: %d points rejected: %s", d.Endpoint, n, out.PartialSuccess().ErrorMessage())
	}
	return nil
}
