package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/procfs"
)

// child is a process the bench started: in its own process group, so a Ctrl-C on the terminal reaches
// only the bench, which stops its children in order; and with a parent-death signal, so none outlives a
// bench that is killed.
type child struct {
	name string
	cmd  *exec.Cmd
	log  string

	stdinMu sync.Mutex
	stdin   io.WriteCloser
	// lines are the child's stdout lines; closed when stdout ends.
	lines chan []byte

	tailMu sync.Mutex
	tail   []byte

	done chan struct{}
	err  error
}

// children is every child still running, for the cleanup on any exit path.
var children = struct {
	sync.Mutex
	set map[*child]struct{}
}{set: map[*child]struct{}{}}

// tailBytes is how much of a child's stderr an error message quotes.
const tailBytes = 4 << 10

// startChild runs bin with args. Its stderr goes to logDir/name.log; its stdout lines to lines. On the
// bench's death the kernel sends it deathSig: SIGKILL, or SIGTERM for a child that must clean up.
func startChild(name, logDir string, deathSig syscall.Signal, env []string, bin string, args ...string) (*child, error) {
	logPath := filepath.Join(logDir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	c := &child{name: name, log: logPath, lines: make(chan []byte, 1024), done: make(chan struct{})}
	c.cmd = exec.Command(bin, args...)
	c.cmd.Env = append(os.Environ(), env...)
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: deathSig}
	c.cmd.Stderr = io.MultiWriter(logFile, (*tailWriter)(c))
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		_ = logFile.Close()
		return nil, err
	}
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		_ = logFile.Close()
		return nil, err
	}
	children.Lock()
	defer children.Unlock()
	if err := c.cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	children.set[c] = struct{}{}
	read := make(chan struct{})
	go func() {
		defer close(read)
		defer close(c.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			c.lines <- bytes.Clone(sc.Bytes())
		}
	}()
	go func() {
		<-read
		c.err = c.cmd.Wait()
		_ = logFile.Close()
		children.Lock()
		delete(children.set, c)
		children.Unlock()
		close(c.done)
	}()
	return c, nil
}

type tailWriter child

func (w *tailWriter) Write(p []byte) (int, error) {
	w.tailMu.Lock()
	defer w.tailMu.Unlock()
	w.tail = append(w.tail, p...)
	if len(w.tail) > tailBytes {
		w.tail = w.tail[len(w.tail)-tailBytes:]
	}
	return len(p), nil
}

// Tail is the end of the child's stderr, for error messages.
func (c *child) Tail() string {
	c.tailMu.Lock()
	defer c.tailMu.Unlock()
	return string(c.tail)
}

// exited describes how the child ended, with the end of its stderr and where its whole log is. A child
// whose stdout ended is about to exit: it waits a little for that.
func (c *child) exited() error {
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		return fmt.Errorf("%s has not exited; its log is %s, ending:\n%s", c.name, c.log, c.Tail())
	}
	err := c.err
	if err == nil {
		err = errors.New("exit status 0")
	}
	return fmt.Errorf("%s exited (%w); its log is %s, ending:\n%s", c.name, err, c.log, c.Tail())
}

// Send writes one line to the child's stdin.
func (c *child) Send(line []byte) error {
	c.stdinMu.Lock()
	defer c.stdinMu.Unlock()
	if _, err := c.stdin.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("writing to %s: %w", c.name, err)
	}
	return nil
}

// Pid is the child's process ID.
func (c *child) Pid() int { return c.cmd.Process.Pid }

// Signal sends sig to the child's process group.
func (c *child) Signal(sig syscall.Signal) {
	_ = syscall.Kill(-c.cmd.Process.Pid, sig)
}

// Kill kills the child's process group and waits until the child is reaped.
func (c *child) Kill() {
	c.Signal(syscall.SIGKILL)
	<-c.done
}

// Stop asks the child to end (closes its stdin, then sends sig unless it is 0), waits up to grace, then
// kills its process group. It returns how the child ended if it did not end by itself.
func (c *child) Stop(sig syscall.Signal, grace time.Duration) error {
	select {
	case <-c.done:
		return nil
	default:
	}
	c.stdinMu.Lock()
	_ = c.stdin.Close()
	c.stdinMu.Unlock()
	if sig != 0 {
		c.Signal(sig)
	}
	select {
	case <-c.done:
		return nil
	case <-time.After(grace):
		c.Kill()
		return fmt.Errorf("%s did not stop within %s and was killed", c.name, grace)
	}
}

// killAllChildren is the last resort of every exit path: it kills what is still running.
func killAllChildren() {
	children.Lock()
	list := make([]*child, 0, len(children.set))
	for c := range children.set {
		list = append(list, c)
	}
	children.Unlock()
	for _, c := range list {
		c.Signal(syscall.SIGKILL)
	}
}

// usage is a process's CPU time and memory, from /proc/PID/stat and /proc/PID/status.
type usage struct {
	// CPU is user plus system time, in seconds.
	CPU float64
	// RSS is the resident set now; Peak is its high-water mark (VmHWM).
	RSS, Peak uint64
}

func usageOf(pid int) (usage, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return usage{}, err
	}
	stat, err := p.Stat()
	if err != nil {
		return usage{}, err
	}
	status, err := p.NewStatus()
	if err != nil {
		return usage{}, err
	}
	return usage{CPU: stat.CPUTime(), RSS: status.VmRSS, Peak: status.VmHWM}, nil
}

// errTimeout marks a wait that ran out of time.
var errTimeout = errors.New("timed out")

// waitUntil calls check whenever wake fires (and at least every 100 ms) until it returns true, ctx ends
// or timeout passes; the error then says what did not happen, with what describe says about the state.
func waitUntil(ctx context.Context, what string, timeout time.Duration, wake func() <-chan struct{}, check func() bool, describe func() string) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		w := wake()
		if check() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (%s)", what, context.Cause(ctx), describe())
		case <-deadline.C:
			return fmt.Errorf("%s: %w after %s (%s)", what, errTimeout, timeout, describe())
		case <-w:
		case <-tick.C:
		}
	}
}

// broadcast: Wait returns a channel that closes at the next Notify.
type broadcast struct {
	mu sync.Mutex
	ch chan struct{}
}

func newBroadcast() *broadcast { return &broadcast{ch: make(chan struct{})} }

func (s *broadcast) Wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ch
}

func (s *broadcast) Notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.ch)
	s.ch = make(chan struct{})
}
