// Command linkmesh-agent-init is PID 1 of a collector pod. It runs the upstream opampsupervisor and turns
// the SIGTERM that Kubernetes sends on pod termination into SIGINT: the supervisor stops its collector
// gracefully only on SIGINT, and on SIGTERM it exits and leaves the collector to be killed. Other signals
// are forwarded as they are. It exits with the supervisor's exit code.
//
// Usage: linkmesh-agent-init -- /opampsupervisor --config /etc/otelcol-supervisor/supervisor.yaml
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
)

func main() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: linkmesh-agent-init -- COMMAND [ARG...]")
		os.Exit(2)
	}
	os.Exit(run(args))
}

func run(args []string) int {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)

	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "linkmesh-agent-init: starting %s: %v\n", args[0], err)
		return 127
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	for {
		select {
		case sig := <-signals:
			if sig == syscall.SIGTERM {
				sig = syscall.SIGINT
			}
			_ = cmd.Process.Signal(sig)
		case err := <-done:
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					return 128 + int(ws.Signal())
				}
				return exit.ExitCode()
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "linkmesh-agent-init: %v\n", err)
				return 1
			}
			return 0
		}
	}
}
