package managedcollector_test

import (
	"os"
	"testing"

	"github.com/linkmesh/linkmesh-operator/internal/operator"
	"github.com/linkmesh/linkmesh-operator/internal/testenv"
)

var env *testenv.Env

const externalURL = "http://linkmesh-operator.linkmesh-system.svc:4320"

func TestMain(m *testing.M) {
	os.Exit(testenv.Run(m, func(e *testenv.Env) (func(), error) {
		env = e
		return testenv.StartOperator(e, operator.Options{ExternalURL: externalURL})
	}))
}
