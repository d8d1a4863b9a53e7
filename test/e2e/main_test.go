//go:build e2e

// Package e2e proves the loop with the real upstream opampsupervisor and a real collector: the operator runs
// in-process against a real kube-apiserver, its OpAMP listener on 127.0.0.1, and the tests play the node.
// Run with `make test-e2e`.
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/linkmesh/linkmesh-operator/internal/manifests"
	"github.com/linkmesh/linkmesh-operator/internal/operator"
	"github.com/linkmesh/linkmesh-operator/test/framework/manager"
	"github.com/linkmesh/linkmesh-operator/test/framework/process"
	"github.com/linkmesh/linkmesh-operator/test/framework/testenv"
	"github.com/linkmesh/linkmesh-operator/test/infrastructure/localagent"
)

var (
	env  *testenv.Env
	bins localagent.Binaries

	// The operator can be restarted by a test; opMu guards these.
	opMu     sync.Mutex
	op       *operator.Operator
	stopOp   func()
	bindAddr string

	// mirrorDir is the operator's --mirror-dir, staged with the e2e binaries by hack/stage-mirror.sh.
	mirrorDir string

	// The manager binary of the tests that run replicas of it, found or built once (managerBinary).
	managerOnce sync.Once
	managerBin  string
	managerErr  error
	// buildDir holds the binary when this suite built it; removed at the end.
	buildDir string
)

func TestMain(m *testing.M) {
	os.Exit(testenv.Run(m, func(e *testenv.Env) (func(), error) {
		env = e
		dir := os.Getenv("LINKMESH_E2E_BIN")
		if dir == "" {
			out, err := exec.Command(filepath.Join(testenv.RepoRoot(), "hack", "e2e-binaries.sh")).Output()
			if err != nil {
				return nil, fmt.Errorf("building the supervisor and collector: %w", err)
			}
			dir = strings.TrimSpace(string(out))
		}
		bins = localagent.Binaries{Supervisor: filepath.Join(dir, "opampsupervisor"), Collector: filepath.Join(dir, "otelcol")}
		var err error
		if mirrorDir, err = os.MkdirTemp("", "linkmesh-e2e-mirror-"); err != nil {
			return nil, err
		}
		// Under the installer's default names, and under the supervisor's own version, which the install
		// test asks for so that the file rendered for it is the one a real supervisor runs.
		for _, versions := range [][]string{nil, {"0.153.0", manifests.DefaultPodSupervisorVersion}} {
			stage := exec.Command(filepath.Join(testenv.RepoRoot(), "hack", "stage-mirror.sh"), append([]string{mirrorDir}, versions...)...)
			stage.Env = append(os.Environ(), "LINKMESH_E2E_BIN="+dir)
			if out, err := stage.CombinedOutput(); err != nil {
				_ = os.RemoveAll(mirrorDir)
				return nil, fmt.Errorf("staging the mirror: %w\n%s", err, out)
			}
		}
		if err := startOperator("127.0.0.1:0"); err != nil {
			_ = os.RemoveAll(mirrorDir)
			return nil, err
		}
		return func() {
			// The replicas die with this process (their parent-death signal) and are stopped by their
			// tests; this is for a test that could not.
			process.KillAll()
			opMu.Lock()
			defer opMu.Unlock()
			stopOp()
			_ = os.RemoveAll(mirrorDir)
			if buildDir != "" {
				_ = os.RemoveAll(buildDir)
			}
		}, nil
	}))
}

// startOperator runs the operator with its listener on addr; collectors are told that address.
func startOperator(addr string) error {
	opMu.Lock()
	defer opMu.Unlock()
	o, stop, err := testenv.RunOperator(env, operator.Options{OpAMPBindAddress: addr, MirrorDir: mirrorDir, SkipControllerNameValidation: true})
	if err != nil {
		return err
	}
	op, stopOp, bindAddr = o, stop, o.ListenerAddr().String()
	return nil
}

// pauseOperator stops the suite's operator until the test ends, for a test that runs operators of its own
// against the same API server: two operators without leader election would fight over every object. The
// operator comes back on its address when the test ends, for the tests after it.
func pauseOperator(t *testing.T) {
	opMu.Lock()
	stopOp()
	// Until it runs again, stopping it is nothing to do: the suite's teardown must not wait on this one.
	stopOp = func() {}
	addr := bindAddr
	opMu.Unlock()
	t.Cleanup(func() {
		if err := startOperator(addr); err != nil {
			t.Errorf("restarting the suite's operator on %s: %v", addr, err)
		}
	})
}

// managerBinary is the manager binary for the tests that run it as a process of its own:
// LINKMESH_MANAGER (`make test-e2e` builds bin/manager), or this tree's, built on first use.
func managerBinary(t *testing.T) string {
	t.Helper()
	managerOnce.Do(func() {
		if managerBin = os.Getenv("LINKMESH_MANAGER"); managerBin != "" {
			return
		}
		if buildDir, managerErr = os.MkdirTemp("", "linkmesh-e2e-manager-"); managerErr != nil {
			return
		}
		managerBin = filepath.Join(buildDir, "manager")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		managerErr = manager.Build(ctx, testenv.RepoRoot(), managerBin)
	})
	if managerErr != nil {
		t.Fatal(managerErr)
	}
	return managerBin
}

// restartOperator stops the operator and starts a new one on the same address.
func restartOperator() error {
	opMu.Lock()
	stopOp()
	addr := bindAddr
	opMu.Unlock()
	return startOperator(addr)
}
