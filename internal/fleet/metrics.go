package fleet

import (
	"github.com/prometheus/client_golang/prometheus"
)

var descAgents = prometheus.NewDesc("linkmesh_collector_agents",
	"Collectors of the ManagedCollector connected to this operator replica, by state: connected, healthy, "+
		"read_only, config_applied, config_failed, config_drifted (the last three against the desired config).",
	[]string{"namespace", "name", "state"}, nil)

var descConnections = prometheus.NewDesc("linkmesh_opamp_connections",
	"Collectors connected to this operator replica over OpAMP, all ManagedCollectors together.", nil, nil)

// Metrics exports the registry's agent counts as linkmesh_collector_agents, read at scrape time: the series
// of a deleted ManagedCollector disappear with its group. Labels are per ManagedCollector, never per agent.
type Metrics struct {
	r *Registry
}

// NewMetrics returns the registry's Prometheus collector; register it with controller-runtime's
// metrics.Registry.
func NewMetrics(r *Registry) *Metrics { return &Metrics{r: r} }

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- descAgents
	ch <- descConnections
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descConnections, prometheus.GaugeValue, float64(m.r.Connections()))
	for key, c := range m.r.Counts() {
		for state, n := range map[string]int32{
			"connected": c.Connected, "healthy": c.Healthy, "config_applied": c.ConfigApplied,
			"config_failed": c.ConfigFailed, "config_drifted": c.ConfigDrifted, "read_only": c.ReadOnly,
		} {
			ch <- prometheus.MustNewConstMetric(descAgents, prometheus.GaugeValue, float64(n), key.Namespace, key.Name, state)
		}
	}
}
