package fleet

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/credential"
)

func TestMetricsCountAgentsUntilTheCollectorIsForgotten(t *testing.T) {
	r, _ := newTestRegistry(t)
	d := desired("a: 1\n")
	r.SetDesired(group1, d)
	m := credential.Membership{Collector: group1, Source: credential.SourcePod}
	for i := range 3 {
		rep := full("host")
		rep.Health = &Health{Healthy: i != 2}
		rep.RemoteConfig = &RemoteConfigReport{Hash: d.Hash, Status: v1alpha1.ConfigStatusApplied}
		r.Observe(uid(i), m, rep, &fakeLink{})
	}
	r.Disconnect(uid(1), nil) // another connection's link: ignored

	want := `
# HELP linkmesh_collector_agents Collectors of the ManagedCollector connected to this operator replica, by state: connected, healthy, read_only, config_applied, config_failed, config_drifted (the last three against the desired config).
# TYPE linkmesh_collector_agents gauge
linkmesh_collector_agents{name="logs",namespace="ns",state="config_applied"} 3
linkmesh_collector_agents{name="logs",namespace="ns",state="config_drifted"} 0
linkmesh_collector_agents{name="logs",namespace="ns",state="config_failed"} 0
linkmesh_collector_agents{name="logs",namespace="ns",state="connected"} 3
linkmesh_collector_agents{name="logs",namespace="ns",state="healthy"} 2
linkmesh_collector_agents{name="logs",namespace="ns",state="read_only"} 0
# HELP linkmesh_opamp_connections Collectors connected to this operator replica over OpAMP, all ManagedCollectors together.
# TYPE linkmesh_opamp_connections gauge
linkmesh_opamp_connections 3
`
	if err := testutil.CollectAndCompare(NewMetrics(r), strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	r.Forget(group1)
	if n := testutil.CollectAndCount(NewMetrics(r), "linkmesh_collector_agents"); n != 0 {
		t.Fatalf("a forgotten ManagedCollector still has %d series", n)
	}
}
