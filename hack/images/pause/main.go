// Command pause is the pod sandbox process: it holds a pod's namespaces open, and as the PID 1 of a pod that
// shares its process namespace it reaps orphaned children. containerd runs it from its sandbox image
// (registry.k8s.io/pause), which cannot be pulled on a machine that reaches no registry, so hack/images.sh
// builds this stand-in into linkmesh.local/pause and the local containerd is pointed at it. Build it static:
// CGO_ENABLED=0.
package main

import (
	"errors"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range sigs {
		if sig == syscall.SIGCHLD {
			reap()
			continue
		}
		// The kubelet stops a sandbox with SIGTERM; exiting 0 tells it the stop was clean.
		os.Exit(0)
	}
}

// reap collects every child that has exited. Signals coalesce, so one SIGCHLD may stand for several children.
func reap() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
	}
}
