// Package rollout_test rolls configs out progressively to simulated supervisors on a real API server: the
// steps, the bake, the rollback, pause and resume, a new spec in the middle, an operator restart in the
// middle, and the readiness kstatus, kubectl wait and Argo CD read. Each test runs its operator and stops
// it; one at a time, on one fixed address, so a restarted operator is found where the agents look.
package rollout_test

import (
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/linkmesh/linkmesh-operator/internal/operator"
	"github.com/linkmesh/linkmesh-operator/test/framework/testenv"
)

var (
	env *testenv.Env

	opMu   sync.Mutex
	stopOp func()
	addr   string
)

// unhealthyGrace is the operator's grace for unhealthy collectors, short for the tests.
const unhealthyGrace = 3 * time.Second

func TestMain(m *testing.M) {
	os.Exit(testenv.Run(m, func(e *testenv.Env) (func(), error) {
		env = e
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		addr = l.Addr().String()
		_ = l.Close()
		return func() {
			opMu.Lock()
			defer opMu.Unlock()
			if stopOp != nil {
				stopOp()
			}
		}, nil
	}))
}

// startOperator runs the operator on addr until the test ends.
func startOperator(t *testing.T) {
	t.Helper()
	opMu.Lock()
	defer opMu.Unlock()
	_, stop, err := testenv.RunOperator(env, operator.Options{
		OpAMPBindAddress: addr, SkipControllerNameValidation: true, UnhealthyGrace: unhealthyGrace,
	})
	if err != nil {
		t.Fatal(err)
	}
	stopOp = stop
	t.Cleanup(func() {
		opMu.Lock()
		defer opMu.Unlock()
		if stopOp != nil {
			stopOp()
			stopOp = nil
		}
	})
}

// restartOperator stops the operator and starts a new one on the same address.
func restartOperator(t *testing.T) {
	t.Helper()
	opMu.Lock()
	stopOp()
	stopOp = nil
	opMu.Unlock()
	startOperator(t)
}
