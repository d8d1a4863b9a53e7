package loadgen

import (
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/linkmesh/linkmesh-operator/internal/fleet"
)

// TestFailByRankPicksTheFirstStep: the agents a ByRank rule of 1% fails are exactly those that a
// progressive rollout's first step of 1% offers the config to, as the operator computes the step's
// threshold for 10,000 collectors (no canary selector, more than the ranks replicas report exactly).
func TestFailByRankPicksTheFirstStep(t *testing.T) {
	const n, fraction = 10000, 0.01
	threshold := fleet.Threshold(n/100, n, 0, nil)
	r := FailRule{Hash: "h", Fraction: fraction, ByRank: true}
	picked, inStep := 0, 0
	for i := range n {
		uid := uuid.Must(uuid.NewV7()).String()
		p, s := r.picks(i, uid), fleet.Rank(uid, false) < threshold
		if p != s {
			t.Fatalf("agent %s: picked %v, in the first step %v", uid, p, s)
		}
		if p {
			picked++
		}
		if s {
			inStep++
		}
	}
	// About 1% of 10,000 random UIDs: not none, not a tenth.
	if picked < 50 || picked > 200 {
		t.Fatalf("picked %d of %d", picked, n)
	}
	// By index, the picks do not depend on the rank: about 1% of any set of agents, the first step's too.
	byIndex := FailRule{Hash: "h", Fraction: 0.5}
	same := 0
	for i := range 1000 {
		uid := uuid.Must(uuid.NewV7()).String()
		if byIndex.picks(i, uid) == byIndex.picks(i, uuid.Must(uuid.NewV7()).String()) {
			same++
		}
	}
	if same != 1000 {
		t.Fatalf("by index, %d of 1000 agents were picked the same with another UID", same)
	}
}

// TestPadAttributesFillsTheServersBounds: a padded description has as many non-identifying attributes as
// the server keeps (host.name among them), each key and value as long as it keeps, and keeps the
// attributes it had.
func TestPadAttributesFillsTheServersBounds(t *testing.T) {
	attrs := padAttributes(map[string]string{"k8s.pod.name": "p", "k8s.node.name": "n"}, 7)
	if len(attrs) != MaxAttributes-1 {
		t.Fatalf("%d attributes, want %d besides host.name", len(attrs), MaxAttributes-1)
	}
	if attrs["k8s.pod.name"] != "p" || attrs["k8s.node.name"] != "n" {
		t.Fatalf("the pod's attributes changed: %v", attrs)
	}
	for k, v := range attrs {
		if strings.HasPrefix(k, "pad.") && (len(k) != MaxAttributeLen || len(v) != MaxAttributeLen) {
			t.Fatalf("attribute %q (%d) = %q (%d), want both %d long", k[:10], len(k), v[:10], len(v), MaxAttributeLen)
		}
	}
}
