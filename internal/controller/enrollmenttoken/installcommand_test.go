package enrollmenttoken_test

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
)

// TestStatusShowsTheInstallCommand: a usable token's status says how to use it, with a placeholder for the
// token, which stays in the Secret; a revoked token's does not.
func TestStatusShowsTheInstallCommand(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	g.Expect(env.Client.Create(context.Background(), newToken(ns, "web-01", 0))).To(Succeed())
	et := waitPhase(t, ns, "web-01", "Pending")
	g.Expect(et.Status.InstallCommand).To(MatchRegexp(
		`^curl -fsSL http://127\.0\.0\.1:[0-9]+/api/v1/downloads/install-opamp\.sh \| sudo sh -s -- --token <TOKEN>$`))

	g.Eventually(func(g Gomega) {
		et := get(g, ns, "web-01")
		et.Spec.Revoked = true
		g.Expect(env.Client.Update(context.Background(), et)).To(Succeed())
	}, timeout, interval).Should(Succeed())
	et = waitPhase(t, ns, "web-01", "Revoked")
	g.Expect(et.Status.InstallCommand).To(BeEmpty())
}
