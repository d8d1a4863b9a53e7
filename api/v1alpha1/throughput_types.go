package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// EventOwnMetricsOffered is emitted when a collector is offered the own_metrics destination.
const EventOwnMetricsOffered = "OwnMetricsOffered"

// MaxComponentsInStatus bounds status.throughput.components: the busiest receivers and exporters.
const MaxComponentsInStatus = 20

// ComponentKind is the kind of a pipeline component in the throughput breakdown.
// +kubebuilder:validation:Enum=Receiver;Exporter
type ComponentKind string

const (
	// ComponentReceiver is a receiver: its rate is accepted items, its error rate refused items.
	ComponentReceiver ComponentKind = "Receiver"
	// ComponentExporter is an exporter: its rate is sent items, its error rate items that failed to send.
	ComponentExporter ComponentKind = "Exporter"
)

// TelemetrySignal names what a throughput counts.
// +kubebuilder:validation:Enum=Spans;MetricPoints;LogRecords
type TelemetrySignal string

const (
	// SignalSpans counts spans.
	SignalSpans TelemetrySignal = "Spans"
	// SignalMetricPoints counts metric data points.
	SignalMetricPoints TelemetrySignal = "MetricPoints"
	// SignalLogRecords counts log records.
	SignalLogRecords TelemetrySignal = "LogRecords"
)

// ThroughputStatus is what the group's collectors moved per second, computed from the own metrics they
// push to the operator's /v1/metrics between two successive exports (about every 60 s).
type ThroughputStatus struct {
	// lastUpdated is when the operator last received own metrics of a collector of this group.
	// +optional
	LastUpdated *metav1.Time `json:"lastUpdated,omitempty"`

	// reporting is the number of connected collectors whose recent own metrics the rates cover.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Reporting int32 `json:"reporting,omitempty"`

	// spans are the group's span rates.
	// +optional
	Spans *SignalThroughput `json:"spans,omitempty"`

	// metricPoints are the group's metric data point rates.
	// +optional
	MetricPoints *SignalThroughput `json:"metricPoints,omitempty"`

	// logRecords are the group's log record rates.
	// +optional
	LogRecords *SignalThroughput `json:"logRecords,omitempty"`

	// components breaks the rates down by receiver and exporter name, summed over the group's collectors:
	// at most 20, the busiest first.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=20
	Components []ComponentThroughput `json:"components,omitempty"`
}

// SignalThroughput are the per-second rates of one signal, summed over the group's collectors.
type SignalThroughput struct {
	// accepted is items per second accepted by receivers (otelcol_receiver_accepted_*).
	// +optional
	Accepted *resource.Quantity `json:"accepted,omitempty"`

	// refused is items per second receivers refused (otelcol_receiver_refused_*).
	// +optional
	Refused *resource.Quantity `json:"refused,omitempty"`

	// sent is items per second exporters sent (otelcol_exporter_sent_*).
	// +optional
	Sent *resource.Quantity `json:"sent,omitempty"`

	// failed is items per second exporters failed to send (otelcol_exporter_send_failed_*).
	// +optional
	Failed *resource.Quantity `json:"failed,omitempty"`
}

// ComponentThroughput is one receiver's or exporter's share of the throughput of one signal.
type ComponentThroughput struct {
	// kind is Receiver or Exporter.
	// +required
	Kind ComponentKind `json:"kind"`

	// name is the component's ID in the collector config, for example otlp or otlphttp/backend.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Name string `json:"name"`

	// signal is what rate and errorRate count; unset for an exporter queue reported without a signal.
	// +optional
	Signal TelemetrySignal `json:"signal,omitempty"`

	// rate is accepted items per second for a receiver, sent items per second for an exporter.
	// +optional
	Rate *resource.Quantity `json:"rate,omitempty"`

	// errorRate is refused items per second for a receiver, failed items per second for an exporter.
	// +optional
	ErrorRate *resource.Quantity `json:"errorRate,omitempty"`

	// queueSize is an exporter's sending queue's current size, summed over the collectors.
	// +optional
	// +kubebuilder:validation:Minimum=0
	QueueSize *int64 `json:"queueSize,omitempty"`

	// queueCapacity is an exporter's sending queue's capacity, summed over the collectors.
	// +optional
	// +kubebuilder:validation:Minimum=0
	QueueCapacity *int64 `json:"queueCapacity,omitempty"`
}
