// Package slowbody plays clients that hold a server's connections the way an attacker would: each sends a
// request's headers at once, then trickles its body one byte at a time, and records when, and how, the server
// let go of it. Tests run it in a child process (Child), so the server's process counts only its own open
// files.
package slowbody

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Options of a run.
type Options struct {
	// Addr is the server's host:port.
	Addr string
	// Path and ContentType of the POST.
	Path, ContentType string
	// Token, when set, is sent as "Authorization: Bearer <Token>".
	Token string
	// LocalIP is the source address of every connection, e.g. 127.0.0.2 to stand apart from the test's
	// well-behaved clients on 127.0.0.1; empty lets the kernel choose.
	LocalIP string
	// Conns is the number of connections, all held at once.
	Conns int
	// MaxContentLength is the largest Content-Length announced; connection i announces a length spread
	// between 1 KiB and it, so every size up to it is covered.
	MaxContentLength int
	// Interval between two body bytes.
	Interval time.Duration
	// GiveUp ends a connection the server still holds after this long: the attack outlasted the test.
	GiveUp time.Duration
}

// Result is what the clients saw.
type Result struct {
	// Conns is the number of connections opened.
	Conns int
	// DialErrors counts connections that could not be opened.
	DialErrors int
	// ClosedByServer counts connections that the server ended (with or without a response) before GiveUp.
	ClosedByServer int
	// HeldUntilGiveUp counts connections the server still held at GiveUp.
	HeldUntilGiveUp int
	// Statuses counts the response status codes received; 0 is a connection closed without a response.
	Statuses map[int]int
	// Retry counts 503 responses that carried Retry-After.
	Retry int
	// Held is how long each connection lasted, sorted.
	Held []time.Duration
	// BodyBytesSent is the most body bytes any connection sent before it ended.
	BodyBytesSent int
}

// MaxHeld is the longest a connection lasted.
func (r Result) MaxHeld() time.Duration {
	if len(r.Held) == 0 {
		return 0
	}
	return r.Held[len(r.Held)-1]
}

// Run opens every connection, then waits until all are ended, by the server or at GiveUp. ready, when not
// nil, is called once every connection has sent its headers.
func Run(ctx context.Context, o Options, ready func()) Result {
	type outcome struct {
		dialErr bool
		status  int
		retry   bool
		held    time.Duration
		gaveUp  bool
		sent    int
	}
	out := make([]outcome, o.Conns)
	var started, wg sync.WaitGroup
	started.Add(o.Conns)
	for i := range o.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i].dialErr, out[i].status, out[i].retry, out[i].held, out[i].gaveUp, out[i].sent = one(ctx, o, i, started.Done)
		}()
	}
	started.Wait()
	if ready != nil {
		ready()
	}
	wg.Wait()
	r := Result{Conns: o.Conns, Statuses: map[int]int{}}
	for _, x := range out {
		switch {
		case x.dialErr:
			r.DialErrors++
			continue
		case x.gaveUp:
			r.HeldUntilGiveUp++
		default:
			r.ClosedByServer++
		}
		r.Statuses[x.status]++
		if x.retry {
			r.Retry++
		}
		r.Held = append(r.Held, x.held)
		r.BodyBytesSent = max(r.BodyBytesSent, x.sent)
	}
	slices.Sort(r.Held)
	return r
}

// one runs connection i; started is called once its headers are sent or it failed to connect.
func one(ctx context.Context, o Options, i int, started func()) (dialErr bool, status int, retry bool, held time.Duration, gaveUp bool, sent int) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if o.LocalIP != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(o.LocalIP)}
	}
	conn, err := d.DialContext(ctx, "tcp", o.Addr)
	if err != nil {
		started()
		return true, 0, false, 0, false, 0
	}
	defer func() { _ = conn.Close() }()
	length := 1024
	if o.Conns > 1 && o.MaxContentLength > length {
		length += (o.MaxContentLength - length) * i / (o.Conns - 1)
	}
	var head strings.Builder
	fmt.Fprintf(&head, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n", o.Path, o.Addr, o.ContentType, length)
	if o.Token != "" {
		fmt.Fprintf(&head, "Authorization: Bearer %s\r\n", o.Token)
	}
	head.WriteString("\r\n")
	began := time.Now()
	_, err = io.WriteString(conn, head.String())
	started()
	if err != nil {
		return false, 0, false, time.Since(began), false, 0
	}

	// The reader sees the response, if any, and the end of the connection.
	type response struct {
		status int
		retry  bool
	}
	ended := make(chan response, 1)
	go func() {
		var r response
		if resp, err := http.ReadResponse(bufio.NewReader(conn), nil); err == nil {
			r.status = resp.StatusCode
			r.retry = resp.Header.Get("Retry-After") != ""
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			// The server may keep the connection for the rest of the body; the attacker goes on trickling.
			_, _ = io.Copy(io.Discard, conn)
		}
		ended <- r
	}()
	tick := time.NewTicker(o.Interval)
	defer tick.Stop()
	giveUp := time.NewTimer(o.GiveUp)
	defer giveUp.Stop()
	for {
		select {
		case r := <-ended:
			return false, r.status, r.retry, time.Since(began), false, sent
		case <-giveUp.C:
			return false, 0, false, time.Since(began), true, sent
		case <-ctx.Done():
			return false, 0, false, time.Since(began), true, sent
		case <-tick.C:
			if sent < length {
				if _, err := conn.Write([]byte{'x'}); err == nil {
					sent++
				}
			}
		}
	}
}

// envOptions carries Options to the child process.
const envOptions = "LINKMESH_SLOWBODY_OPTIONS"

// resultMarker starts the child's one line of output that holds its Result.
const resultMarker = "SLOWBODY-RESULT "

// readyMarker is the child's line once every connection has sent its headers.
const readyMarker = "SLOWBODY-READY"

// ChildMain runs the clients when this test binary was started by Start, and reports whether it was: call it
// first in a test function named by Start's run argument, and return when it is true.
func ChildMain(t *testing.T) bool {
	raw := os.Getenv(envOptions)
	if raw == "" {
		return false
	}
	var o Options
	if err := json.Unmarshal([]byte(raw), &o); err != nil {
		t.Fatal(err)
	}
	r := Run(context.Background(), o, func() { fmt.Println(readyMarker) })
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println(resultMarker + string(b))
	return true
}

// Child is a run in another process.
type Child struct {
	ready  chan struct{}
	exited chan struct{}
	result chan Result
	err    chan error
}

// Start re-runs this test binary with -test.run=^run$ to play o, so the clients' sockets are not the test
// process' open files. The child is killed when the test ends.
func Start(t *testing.T, run string, o Options) *Child {
	t.Helper()
	raw, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+run+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), envOptions+"="+string(raw))
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &Child{ready: make(chan struct{}), exited: make(chan struct{}), result: make(chan Result, 1), err: make(chan error, 1)}
	go func() {
		defer close(c.exited)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		found := false
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == readyMarker:
				close(c.ready)
			case strings.HasPrefix(line, resultMarker):
				var r Result
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, resultMarker)), &r); err != nil {
					c.err <- err
					return
				}
				found = true
				c.result <- r
			}
		}
		if err := cmd.Wait(); err != nil {
			c.err <- fmt.Errorf("slow-body child: %w", err)
		} else if !found {
			c.err <- errors.New("slow-body child printed no result")
		}
	}()
	t.Cleanup(func() {
		select {
		case <-c.exited:
		default:
			_ = cmd.Process.Kill()
			<-c.exited
		}
	})
	return c
}

// Ready is closed once every connection has sent its headers.
func (c *Child) Ready() <-chan struct{} { return c.ready }

// Wait returns the child's Result.
func (c *Child) Wait() (Result, error) {
	select {
	case r := <-c.result:
		return r, nil
	case err := <-c.err:
		return Result{}, err
	}
}
