// Package statusmetrics exports what only ManagedCollector status knows, as Prometheus gauges: how many
// collectors each ManagedCollector should have. The fleet's own gauges (linkmesh_collector_agents) count the
// collectors connected to one replica; how many are wanted is the reconciler's answer (the DaemonSet's
// scheduled pods plus redeemed hosts), which lives in status.counts.desired. Alerts on missing collectors
// compare the two.
package statusmetrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
)

// listTimeout bounds a scrape's read of the cache; a cache that has not synced yet blocks no scrape.
const listTimeout = 5 * time.Second

var descDesired = prometheus.NewDesc("linkmesh_collector_desired",
	"Collectors the ManagedCollector should have connected (status.counts.desired): the DaemonSet's scheduled "+
		"pods plus the hosts that redeemed an EnrollmentToken. Every replica exports the same value.",
	[]string{"namespace", "name"}, nil)

// Collector reads ManagedCollectors from the informer cache at scrape time, so a deleted ManagedCollector's
// series disappear by themselves. Labels are per ManagedCollector, never per agent.
type Collector struct {
	reader client.Reader
}

// New returns a Collector over reader, the manager's cache; register it with controller-runtime's
// metrics.Registry.
func New(reader client.Reader) *Collector { return &Collector{reader: reader} }

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) { ch <- descDesired }

// Collect implements prometheus.Collector. A failed read exports nothing rather than an invalid metric:
// controller-runtime's endpoint fails the whole scrape on one, and the reason (a cache still syncing at
// start-up) passes by itself.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), listTimeout)
	defer cancel()
	list := &v1alpha1.ManagedCollectorList{}
	// Read-only: the cache's objects are not copied (10,000 ManagedCollectors with large configs would be).
	if err := c.reader.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil {
		return
	}
	for i := range list.Items {
		mc := &list.Items[i]
		ch <- prometheus.MustNewConstMetric(descDesired, prometheus.GaugeValue, float64(mc.Status.Counts.Desired), mc.Namespace, mc.Name)
	}
}
