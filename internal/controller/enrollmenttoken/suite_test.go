package enrollmenttoken_test

import (
	"os"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/linkmesh/linkmesh-operator/internal/operator"
	"github.com/linkmesh/linkmesh-operator/test/framework/testenv"
)

var (
	env *testenv.Env
	// clock drives expiry; tests step it instead of sleeping.
	clock = clocktesting.NewFakeClock(time.Now())
)

func TestMain(m *testing.M) {
	os.Exit(testenv.Run(m, func(e *testenv.Env) (func(), error) {
		env = e
		return testenv.StartOperator(e, operator.Options{Clock: clock})
	}))
}
