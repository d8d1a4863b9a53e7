package otlpintake_test

import (
	"os"
	"testing"

	"github.com/linkmesh/linkmesh-operator/internal/operator"
	"github.com/linkmesh/linkmesh-operator/test/framework/testenv"
)

var (
	env *testenv.Env
	// addr is the operator's listener on 127.0.0.1; with no ExternalURL it is also what collectors are
	// offered as their own_metrics destination.
	addr string
)

func TestMain(m *testing.M) {
	os.Exit(testenv.Run(m, func(e *testenv.Env) (func(), error) {
		env = e
		op, stop, err := testenv.RunOperator(e, operator.Options{})
		if err != nil {
			return nil, err
		}
		addr = op.ListenerAddr().String()
		return stop, nil
	}))
}
