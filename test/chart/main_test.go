// Package chart_test checks the Helm chart in charts/linkmesh-operator: it lints and renders deterministically,
// it installs what config/ installs, every object it renders is accepted by a real API server, and the RBAC it
// grants is enough for the operator, and known to be needed.
package chart_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/linkmesh/linkmesh-operator/test/framework/testenv"
)

const (
	// release and namespace are what the README's install command uses; the defaults render the Service
	// linkmesh-operator that the operator's built-in external URL points at.
	release   = "linkmesh-operator"
	namespace = "linkmesh-system"
)

var (
	env      *testenv.Env
	chartDir = filepath.Join(testenv.RepoRoot(), "charts", "linkmesh-operator")
)

// TestMain starts a control plane without CRDs: the tests install the chart's own copies.
func TestMain(m *testing.M) {
	os.Exit(testenv.RunWith(m, testenv.Options{NoCRDs: true}, func(e *testenv.Env) (func(), error) {
		env = e
		return nil, nil
	}))
}
