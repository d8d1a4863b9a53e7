// Package argocd_test runs the Argo CD health checks of config/argocd on fixtures of every state; the
// rollout suite runs them on live objects too.
package argocd_test

import (
	"os"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/linkmesh/linkmesh-operator/test/framework/argocdhealth"
)

// health runs script on the fixture, as Argo CD would.
func health(t *testing.T, script, fixture string) (string, string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", fixture))
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := yaml.Unmarshal(raw, &obj); err != nil {
		t.Fatalf("%s: %v", fixture, err)
	}
	status, message, err := argocdhealth.Health(script, obj)
	if err != nil {
		t.Fatalf("%s: %v", fixture, err)
	}
	return status, message
}

func TestManagedCollectorHealth(t *testing.T) {
	for _, tc := range []struct {
		fixture, status, message string
	}{
		{"mc-ready.yaml", "Healthy", "3 collectors run the current config and are healthy"},
		{"mc-rolling-out.yaml", "Progressing", "rolling out config 4d9acd2f179d, step 2 of 3: 10 of 100 connected collectors run it"},
		{"mc-rolled-back.yaml", "Degraded", "the rollout of config 4d9acd2f179d failed and was rolled back: collectors run 18af02aa1172; fix or revert spec.config"},
		{"mc-config-invalid.yaml", "Degraded", "spec.config is invalid; collectors keep the last accepted config"},
		{"mc-paused.yaml", "Suspended", "the rollout of config 4d9acd2f179d is paused at step 1 of 3 (spec.rollout.paused): 1 of 100 connected collectors run it"},
		{"mc-generation-pending.yaml", "Progressing", "Waiting for the operator to act on the latest spec"},
		{"mc-unhealthy.yaml", "Degraded", "1 of 3 connected collectors are unhealthy"},
		{"mc-no-collectors.yaml", "Progressing", "waiting for a collector to connect"},
	} {
		t.Run(tc.fixture, func(t *testing.T) {
			status, message := health(t, "managedcollector.lua", tc.fixture)
			if status != tc.status || message != tc.message {
				t.Fatalf("got %s %q, want %s %q", status, message, tc.status, tc.message)
			}
		})
	}
}

func TestEnrollmentTokenHealth(t *testing.T) {
	for _, tc := range []struct {
		fixture, status string
	}{
		{"et-pending.yaml", "Healthy"},
		{"et-redeemed.yaml", "Healthy"},
		{"et-expired.yaml", "Degraded"},
		{"et-revoked.yaml", "Suspended"},
		{"et-no-collector.yaml", "Degraded"},
		{"et-new.yaml", "Progressing"},
	} {
		t.Run(tc.fixture, func(t *testing.T) {
			if status, _ := health(t, "enrollmenttoken.lua", tc.fixture); status != tc.status {
				t.Fatalf("got %s, want %s", status, tc.status)
			}
		})
	}
}
