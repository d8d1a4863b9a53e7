package managedcollector_test

import (
	"os"
	"testing"

	"github.com/linkmesh/linkmesh-operator/internal/operator"
	"github.com/linkmesh/linkmesh-operator/test/framework/testenv"
)

var (
	env *testenv.Env
	// opampAddr is the operator's OpAMP listener on 127.0.0.1.
	opampAddr string
)

// externalURL is what the pods are told; the tests' simulated agents dial opampAddr instead.
const externalURL = "http://linkmesh-operator.linkmesh-system.svc:4320"

func TestMain(m *testing.M) {
	os.Exit(testenv.Run(m, func(e *testenv.Env) (func(), error) {
		env = e
		op, stop, err := testenv.RunOperator(e, operator.Options{ExternalURL: externalURL})
		if err != nil {
			return nil, err
		}
		opampAddr = op.ListenerAddr().String()
		return stop, nil
	}))
}
