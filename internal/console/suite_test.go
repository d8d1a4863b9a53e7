package console_test

import (
	"os"
	"testing"

	"github.com/linkmesh/linkmesh-operator/test/framework/testenv"
)

var env *testenv.Env

// TestMain starts one control plane for the package; each test runs its own operator with the console.
func TestMain(m *testing.M) {
	os.Exit(testenv.Run(m, func(e *testenv.Env) (func(), error) {
		env = e
		return nil, nil
	}))
}
