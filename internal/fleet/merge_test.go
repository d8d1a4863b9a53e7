package fleet

import (
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
)

func agentAt(uid string, at time.Time, healthy bool) v1alpha1.AgentStatus {
	t := metav1.NewTime(at)
	return v1alpha1.AgentStatus{InstanceUID: uid, Connected: true, Healthy: healthy, LastSeen: &t,
		ConfigHash: "h", ConfigStatus: v1alpha1.ConfigStatusApplied}
}

func q(s string) *resource.Quantity {
	v := resource.MustParse(s)
	return &v
}

// TestMergeIsTheUnionOfTheReplicas: counts add up (a share counted against another hash adds no config
// counts), the agent list is one bounded, ordered list with each instance once, rates add up.
func TestMergeIsTheUnionOfTheReplicas(t *testing.T) {
	g := NewWithT(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	local := Snapshot{
		Counts:     v1alpha1.AgentCounts{Connected: 2, Healthy: 2, ConfigApplied: 2},
		Agents:     []v1alpha1.AgentStatus{agentAt("a", t0.Add(2*time.Second), true), agentAt("moved", t0, true)},
		Throughput: &v1alpha1.ThroughputStatus{Reporting: 1, Spans: &v1alpha1.SignalThroughput{Accepted: q("10")}},
		Rollout:    &v1alpha1.ShareRollout{Revision: "h", Candidates: 2, Offered: 1, Updated: 1, LowestRanks: []string{"0000000000000005"}},
	}
	var many []v1alpha1.AgentStatus
	for i := range 60 {
		many = append(many, agentAt(fmt.Sprintf("b-%02d", i), t0.Add(time.Duration(i)*time.Millisecond), true))
	}
	many = append(many, agentAt("moved", t0.Add(time.Hour), false))
	shares := []v1alpha1.CollectorShare{
		{CountedHash: "h", Counts: v1alpha1.AgentCounts{Connected: 61, Healthy: 60, ConfigApplied: 61, ReadOnly: 1}, Agents: many,
			Throughput: &v1alpha1.ThroughputStatus{Reporting: 3, Spans: &v1alpha1.SignalThroughput{Accepted: q("2.5")}},
			Rollout:    &v1alpha1.ShareRollout{Revision: "h", Candidates: 60, Offered: 3, Failed: 1, LowestRanks: []string{"0000000000000003"}}},
		{CountedHash: "old", Counts: v1alpha1.AgentCounts{Connected: 5, Healthy: 5, ConfigApplied: 5},
			Rollout: &v1alpha1.ShareRollout{Revision: "old", Candidates: 5, Offered: 5, Updated: 5, LowestRanks: []string{"0000000000000001"}}},
	}
	m := Merge("h", local, shares)
	// "moved" is counted by both: once, as the share saw it last.
	g.Expect(m.Counts).To(Equal(v1alpha1.AgentCounts{Connected: 67, Healthy: 66, ConfigApplied: 62, ReadOnly: 1}))
	g.Expect(m.Agents).To(HaveLen(v1alpha1.MaxAgentsInStatus))
	g.Expect(m.Agents[0].InstanceUID).To(Equal("moved"), "troubled first, and listed once, as seen last")
	g.Expect(m.Agents[0].Healthy).To(BeFalse())
	seenMoved := 0
	for _, a := range m.Agents {
		if a.InstanceUID == "moved" {
			seenMoved++
		}
	}
	g.Expect(seenMoved).To(Equal(1))
	g.Expect(m.Agents[1].InstanceUID).To(Equal("a"), "then the most recently seen")
	g.Expect(m.Throughput.Reporting).To(Equal(int32(4)))
	g.Expect(m.Throughput.Spans.Accepted.String()).To(Equal("12500m"))
	g.Expect(m.Rollout).To(Equal(&v1alpha1.ShareRollout{Revision: "h", Candidates: 67, Offered: 4, Updated: 1, Failed: 1,
		LowestRanks: []string{"0000000000000001", "0000000000000003", "0000000000000005"}}))
	g.Expect(Merge("h", local, nil)).To(Equal(local), "one replica: its own snapshot")
}

// TestMergeListsAMovedCollectorWhereItIsConnected: a collector that moved to another replica is listed as
// connected, also when the replica it left noticed its departure after it arrived elsewhere.
func TestMergeListsAMovedCollectorWhereItIsConnected(t *testing.T) {
	g := NewWithT(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	arrived := agentAt("moved", t0, true)
	left := agentAt("moved", t0.Add(time.Minute), true)
	left.Connected = false
	local := Snapshot{Counts: v1alpha1.AgentCounts{Connected: 1, Healthy: 1, ConfigApplied: 1}, Agents: []v1alpha1.AgentStatus{arrived}}
	shares := []v1alpha1.CollectorShare{{CountedHash: "h", Agents: []v1alpha1.AgentStatus{left}}}
	for _, m := range []Snapshot{
		Merge("h", local, shares),
		// Listed the other way round: the leader's is the share, the other replica's the local snapshot.
		Merge("h", Snapshot{Agents: []v1alpha1.AgentStatus{left}}, []v1alpha1.CollectorShare{{CountedHash: "h", Counts: local.Counts, Agents: local.Agents}}),
	} {
		g.Expect(m.Counts.Connected).To(Equal(int32(1)))
		g.Expect(m.Agents).To(Equal([]v1alpha1.AgentStatus{arrived}), "listed once, connected, as the counts say")
	}
	// Two replicas that both say connected (one of them killed, its share not expired yet): the last seen.
	stale, fresh := agentAt("moved", t0, true), agentAt("moved", t0.Add(time.Second), true)
	m := Merge("h", Snapshot{Agents: []v1alpha1.AgentStatus{fresh}}, []v1alpha1.CollectorShare{{CountedHash: "h", Agents: []v1alpha1.AgentStatus{stale}}})
	g.Expect(m.Agents).To(Equal([]v1alpha1.AgentStatus{fresh}))
}

// TestMergeCountsAMovedCollectorOnce: a replica was killed and its share still counts the collectors that
// moved to the leader; each is counted once, with what the replica it is connected to says of it.
func TestMergeCountsAMovedCollectorOnce(t *testing.T) {
	g := NewWithT(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	failed := agentAt("failing", t0, true)
	failed.ConfigStatus = v1alpha1.ConfigStatusFailed
	readOnly := agentAt("plain", t0, true)
	readOnly.ConfigStatus, readOnly.ConfigHash = v1alpha1.ConfigStatusReadOnly, "own"
	dead := v1alpha1.CollectorShare{CountedHash: "h",
		Counts: v1alpha1.AgentCounts{Connected: 4, Healthy: 4, ConfigApplied: 2, ConfigFailed: 1, ReadOnly: 1},
		Agents: []v1alpha1.AgentStatus{agentAt("stays", t0, true), agentAt("moved", t0, true), failed, readOnly}}
	// On the leader now: moved (unhealthy since), failing and plain, seen later.
	movedNow := agentAt("moved", t0.Add(2*time.Second), false)
	failedNow := failed
	failedNow.LastSeen = &metav1.Time{Time: t0.Add(2 * time.Second)}
	readOnlyNow := readOnly
	readOnlyNow.LastSeen = &metav1.Time{Time: t0.Add(2 * time.Second)}
	local := Snapshot{Counts: v1alpha1.AgentCounts{Connected: 4, Healthy: 3, ConfigApplied: 2, ConfigFailed: 1, ReadOnly: 1},
		Agents: []v1alpha1.AgentStatus{agentAt("leader's", t0, true), movedNow, failedNow, readOnlyNow}}
	m := Merge("h", local, []v1alpha1.CollectorShare{dead})
	g.Expect(m.Counts).To(Equal(v1alpha1.AgentCounts{Connected: 5, Healthy: 4, ConfigApplied: 3, ConfigFailed: 1, ReadOnly: 1}),
		"stays and leader's once each; moved, failing and plain once, as the leader sees them")
	g.Expect(m.Agents).To(HaveLen(5))

	// A share counted against an older hash added no config counts, and takes none away.
	dead.CountedHash = "old"
	m = Merge("h", local, []v1alpha1.CollectorShare{dead})
	g.Expect(m.Counts).To(Equal(v1alpha1.AgentCounts{Connected: 5, Healthy: 4, ConfigApplied: 2, ConfigFailed: 1, ReadOnly: 1}))
}
