package statusmetrics_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/operator"
	"github.com/linkmesh/linkmesh-operator/internal/statusmetrics"
)

func mc(ns, name string, desired int32) *v1alpha1.ManagedCollector {
	return &v1alpha1.ManagedCollector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Status:     v1alpha1.ManagedCollectorStatus{Counts: v1alpha1.AgentCounts{Desired: desired, Connected: 1}},
	}
}

func TestDesiredPerManagedCollector(t *testing.T) {
	scheme, err := operator.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(mc("team-a", "nodes", 3), mc("team-b", "hosts", 0)).Build()
	want := `# HELP linkmesh_collector_desired Collectors the ManagedCollector should have connected (status.counts.desired): the DaemonSet's scheduled pods plus the hosts that redeemed an EnrollmentToken. Every replica exports the same value.
# TYPE linkmesh_collector_desired gauge
linkmesh_collector_desired{name="hosts",namespace="team-b"} 0
linkmesh_collector_desired{name="nodes",namespace="team-a"} 3
`
	if err := testutil.CollectAndCompare(statusmetrics.New(c), strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

// failingReader is a cache that cannot list, as one that has not synced.
type failingReader struct{ client.Reader }

func (failingReader) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return errors.New("the cache is not started")
}

func TestAFailedReadExportsNothing(t *testing.T) {
	if n := testutil.CollectAndCount(statusmetrics.New(failingReader{})); n != 0 {
		t.Errorf("a failed read exported %d series, want none (an invalid metric would fail the whole scrape)", n)
	}
}
