//go:build replicas

// Package replicas runs two and three operator replicas against one API server: each replica is the real
// manager binary in a process of its own, on its own loopback ports, with --leader-elect, as pods behind
// one Service are. Simulated supervisors (test/framework/simagent) are spread over the replicas and move
// to the next replica when a connection fails, as a Service sends a reconnecting collector to a live pod.
// The tests assert what a user sees: the ManagedCollector's status and Events, what the collectors run.
//
// Lines starting MEASURE are timings worth noting; no test asserts one.
package replicas

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/linkmesh/linkmesh-operator/test/framework/manager"
	"github.com/linkmesh/linkmesh-operator/test/framework/process"
	"github.com/linkmesh/linkmesh-operator/test/framework/testenv"
)

var (
	env *testenv.Env
	// managerBin is the manager binary: LINKMESH_MANAGER, or built into workDir.
	managerBin string
	// kubeconfig is the replicas' kubeconfig, an admin user of its own.
	kubeconfig string
	// workDir holds the binary, the kubeconfig and every replica's log; kept when a test failed.
	workDir string
	failed  atomic.Bool
)

func TestMain(m *testing.M) {
	code := testenv.Run(m, setup)
	// testenv stops the control plane on SIGINT and SIGTERM and exits; the replicas die with this process
	// (their parent-death signal). This is for every other exit path.
	process.KillAll()
	os.Exit(code)
}

func setup(e *testenv.Env) (func(), error) {
	env = e
	var err error
	if workDir, err = os.MkdirTemp("", "linkmesh-replicas-"); err != nil {
		return nil, err
	}
	teardown := func() {
		process.KillAll()
		if failed.Load() {
			fmt.Fprintf(os.Stderr, "the replicas' logs are in %s\n", workDir)
			return
		}
		_ = os.RemoveAll(workDir)
	}
	managerBin = os.Getenv("LINKMESH_MANAGER")
	if managerBin == "" {
		managerBin = filepath.Join(workDir, "manager")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if err := manager.Build(ctx, testenv.RepoRoot(), managerBin); err != nil {
			return teardown, err
		}
	}
	kubeconfig = filepath.Join(workDir, "operator.kubeconfig")
	return teardown, env.WriteKubeconfig(kubeconfig, "linkmesh-operator")
}
