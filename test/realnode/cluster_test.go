//go:build realnode

package realnode

import (
	"errors"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/linkmesh/linkmesh-operator/test/infrastructure/onenode"
)

// A second cluster on the machine is refused before it touches anything: in particular it must not take
// the running cluster's saved host state for a crashed run's and tear the running cluster down.
func TestASecondClusterIsRefused(t *testing.T) {
	if skip != "" {
		t.Skip(skip)
	}
	g := NewWithT(t)
	second, err := onenode.Start(t.Context(), onenode.Options{NodeBin: "/nonexistent", ControlPlaneBin: "/nonexistent"})
	if second != nil {
		_ = second.Stop()
	}
	g.Expect(errors.Is(err, onenode.ErrBusy)).To(BeTrue(), "second Start: %v", err)
	g.Expect(cluster.Leftovers()).NotTo(BeEmpty(), "the running cluster's changes to the host are gone")
	node := &corev1.Node{}
	g.Expect(k8s.Get(t.Context(), types.NamespacedName{Name: onenode.NodeName}, node)).To(Succeed())
	ready := false
	for _, c := range node.Status.Conditions {
		ready = ready || (c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue)
	}
	g.Expect(ready).To(BeTrue(), "the running node is no longer Ready")
}
