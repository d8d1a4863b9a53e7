package fleet

import (
	"fmt"
	"testing"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
)

// TestEventMessagesAgree: an aggregated Event reads right for one collector and for several.
func TestEventMessagesAgree(t *testing.T) {
	for _, tc := range []struct {
		reason, detail string
		one, several   string
	}{
		{v1alpha1.EventTooManyCollectors, "",
			"Collector pod-0 (instance 0) was refused: the ManagedCollector already holds as many collectors as it may (spec.maxCollectors)",
			"3 collectors, including pod-0 (instance 0), were refused: the ManagedCollector already holds as many collectors as it may (spec.maxCollectors)"},
		{v1alpha1.EventInstanceUIDTaken, "",
			"Collector pod-0 (instance 0) is bound to another ManagedCollector or EnrollmentToken; presented with another credential, a new instance UID was given instead",
			"3 collectors, including pod-0 (instance 0), are bound to another ManagedCollector or EnrollmentToken; presented with another credential, a new instance UID was given instead"},
		{v1alpha1.EventOwnMetricsOffered, "",
			"Collector pod-0 (instance 0) was offered the own_metrics destination",
			"3 collectors, including pod-0 (instance 0), were offered the own_metrics destination"},
		{v1alpha1.EventReadOnlyMember, "",
			"Collector pod-0 (instance 0) no longer accepts remote config: a read-only member now, keeps running its own",
			"3 collectors, including pod-0 (instance 0), no longer accept remote config: a read-only member now, keep running its own"},
		{v1alpha1.EventConfigDrift, "effective config lacks exporter \"debug\"",
			"Collector pod-0 (instance 0) reports config 0123456789ab applied, but its effective config lacks exporter \"debug\"; re-applying it",
			"3 collectors, including pod-0 (instance 0), report config 0123456789ab applied, but their effective config lacks exporter \"debug\"; re-applying it"},
		{v1alpha1.EventConfigHealed, "",
			"Collector pod-0 (instance 0) runs config 0123456789ab again",
			"3 collectors, including pod-0 (instance 0), run config 0123456789ab again"},
	} {
		for n, want := range map[int]string{1: tc.one, 3: tc.several} {
			var l eventLog
			for i := range n {
				l.add(tc.reason, "Normal", tc.detail, "0123456789abcdef", &agent{uid: fmt.Sprint(i), description: Description{PodName: "pod-" + fmt.Sprint(i)}})
			}
			if got := l.drain()[0].Message; got != want {
				t.Errorf("%s, %d collectors:\n got %q\nwant %q", tc.reason, n, got, want)
			}
		}
	}
}
