package managedcollector_test

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
)

// TestUnparseableApplyTimeoutGetsTheBoundsMessage: a configApplyTimeout that CEL's duration() cannot parse
// ("1d", "5 seconds") got a "type conversion error"; a user must read what is allowed, as for a value out of
// bounds.
func TestUnparseableApplyTimeoutGetsTheBoundsMessage(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	collector := func(timeout string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": v1alpha1.GroupVersion.String(), "kind": "ManagedCollector",
			"metadata": map[string]any{"namespace": ns, "generateName": "timeout-"},
			"spec": map[string]any{
				"mode": string(v1alpha1.ModeExternal), "config": validConfig,
				"supervisor": map[string]any{"configApplyTimeout": timeout},
			},
		}}
	}
	for _, timeout := range []string{"1d", "5 seconds", "10", "500ms", "11m"} {
		t.Run(timeout, func(t *testing.T) {
			g := NewWithT(t)
			err := env.Client.Create(ctx, collector(timeout))
			g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want Invalid, got %v", err)
			g.Expect(err.Error()).To(ContainSubstring("configApplyTimeout must be between 1s and 10m, written with the units h, m, s or ms"))
			g.Expect(err.Error()).NotTo(ContainSubstring("conversion"))
		})
	}
	for _, timeout := range []string{"1s", "1500ms", "2m30s", "10m"} {
		NewWithT(t).Expect(env.Client.Create(ctx, collector(timeout))).To(Succeed(), "configApplyTimeout %s", timeout)
	}
}
