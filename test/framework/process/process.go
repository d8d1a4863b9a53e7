// Package process runs the helper processes of the benchmark and of the multi-replica tests: operator
// replicas, load generators, control planes. Each child runs in its own process group, so a Ctrl-C on the
// terminal reaches only its parent, which stops its children in order, and with a parent-death signal, so
// none outlives a parent that is killed.
package process

import (
	"bufio"
	"bytes"
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

// Child is a process started by Start.
type Child struct {
	// Name names the child in messages and its log file.
	Name string
	// Log is the file its stderr goes to.
	Log string

	cmd *exec.Cmd

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
	set map[*Child]struct{}
}{set: map[*Child]struct{}{}}

// tailBytes is how much of a child's stderr an error message quotes.
const tailBytes = 4 << 10

// Start runs bin with args and env added to this process's environment. Its stderr goes to
// logDir/name.log; its stdout lines to Lines. When this process dies the kernel sends it deathSig: SIGKILL,
// or SIGTERM for a child that must clean up.
func Start(name, logDir string, deathSig syscall.Signal, env []string, bin string, args ...string) (*Child, error) {
	logPath := filepath.Join(logDir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	c := &Child{Name: name, Log: logPath, lines: make(chan []byte, 1024), done: make(chan struct{})}
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

type tailWriter Child

func (w *tailWriter) Write(p []byte) (int, error) {
	w.tailMu.Lock()
	defer w.tailMu.Unlock()
	w.tail = append(w.tail, p...)
	if len(w.tail) > tailBytes {
		w.tail = w.tail[len(w.tail)-tailBytes:]
	}
	return len(p), nil
}

// Lines are the child's stdout lines; the channel closes when its stdout ends. A child whose stdout
// nobody reads blocks once the buffer is full: DiscardLines if they do not matter.
func (c *Child) Lines() <-chan []byte { return c.lines }

// DiscardLines reads and drops the child's stdout, so it never blocks on a full pipe.
func (c *Child) DiscardLines() {
	go func() {
		for range c.lines {
		}
	}()
}

// Done is closed once the child exited and was reaped.
func (c *Child) Done() <-chan struct{} { return c.done }

// Err is how the child ended (exec.Cmd.Wait's error); valid once Done is closed.
func (c *Child) Err() error {
	<-c.done
	return c.err
}

// Tail is the end of the child's stderr, for error messages.
func (c *Child) Tail() string {
	c.tailMu.Lock()
	defer c.tailMu.Unlock()
	return string(c.tail)
}

// Exited describes how the child ended, with the end of its stderr and where its whole log is. A child
// whose stdout ended is about to exit: it waits a little for that.
func (c *Child) Exited() error {
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		return fmt.Errorf("%s has not exited; its log is %s, ending:\n%s", c.Name, c.Log, c.Tail())
	}
	err := c.err
	if err == nil {
		err = errors.New("exit status 0")
	}
	return fmt.Errorf("%s exited (%w); its log is %s, ending:\n%s", c.Name, err, c.Log, c.Tail())
}

// Send writes one line to the child's stdin.
func (c *Child) Send(line []byte) error {
	c.stdinMu.Lock()
	defer c.stdinMu.Unlock()
	if _, err := c.stdin.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("writing to %s: %w", c.Name, err)
	}
	return nil
}

// Pid is the child's process ID.
func (c *Child) Pid() int { return c.cmd.Process.Pid }

// Signal sends sig to the child's process group.
func (c *Child) Signal(sig syscall.Signal) {
	_ = syscall.Kill(-c.cmd.Process.Pid, sig)
}

// Kill kills the child's process group and waits until the child is reaped.
func (c *Child) Kill() {
	c.Signal(syscall.SIGKILL)
	<-c.done
}

// Stop asks the child to end (closes its stdin, then sends sig unless it is 0), waits up to grace, then
// kills its process group. It returns how the child ended if it did not end by itself.
func (c *Child) Stop(sig syscall.Signal, grace time.Duration) error {
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
		return fmt.Errorf("%s did not stop within %s and was killed", c.Name, grace)
	}
}

// KillAll is the last resort of every exit path: it kills what is still running.
func KillAll() {
	children.Lock()
	list := make([]*Child, 0, len(children.set))
	for c := range children.set {
		list = append(list, c)
	}
	children.Unlock()
	for _, c := range list {
		c.Signal(syscall.SIGKILL)
	}
}

// Usage is a process's CPU time and memory, from /proc/PID/stat and /proc/PID/status.
type Usage struct {
	// CPU is user plus system time, in seconds.
	CPU float64
	// RSS is the resident set now; Peak is its high-water mark (VmHWM).
	RSS, Peak uint64
}

// UsageOf reads the usage of the process pid.
func UsageOf(pid int) (Usage, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return Usage{}, err
	}
	stat, err := p.Stat()
	if err != nil {
		return Usage{}, err
	}
	status, err := p.NewStatus()
	if err != nil {
		return Usage{}, err
	}
	return Usage{CPU: stat.CPUTime(), RSS: status.VmRSS, Peak: status.VmHWM}, nil
}
