package main

import (
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSIGTERMBecomesSIGINT runs the init (this test binary re-executed) over a shell that records which
// signal reached it, as the supervisor would see it.
func TestSIGTERMBecomesSIGINT(t *testing.T) {
	if os.Getenv("LINKMESH_AGENT_INIT_CHILD") == "1" {
		os.Exit(run(flag.Args()))
	}
	dir := t.TempDir()
	marker, ready := filepath.Join(dir, "got"), filepath.Join(dir, "ready")
	script := `trap 'echo INT > "$1"; exit 3' INT; trap 'echo TERM > "$1"; exit 0' TERM; touch "$2"; while :; do sleep 0.05; done`
	cmd := exec.Command(os.Args[0], "-test.run=^TestSIGTERMBecomesSIGINT$", "--", "/bin/sh", "-c", script, "sh", marker, ready)
	cmd.Env = append(os.Environ(), "LINKMESH_AGENT_INIT_CHILD=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("child never started")
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	got, rerr := os.ReadFile(marker)
	if rerr != nil {
		t.Fatalf("child recorded no signal: %v", rerr)
	}
	if s := strings.TrimSpace(string(got)); s != "INT" {
		t.Fatalf("child got SIG%s, want SIGINT", s)
	}
	// The init exits with the child's exit code.
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("init exited with %v, want the child's code 3", err)
	}
}
