package tcpproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Every test ends with every goroutine it started gone, the proxy's and the backends'.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// backend is a line echo server on loopback that prefixes each answer with its name, so a client can
// tell which backend the proxy chose. kill closes it as a killed process's sockets close.
type backend struct {
	name string
	ln   net.Listener
	wg   sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	// served counts the connections accepted so far.
	served int
}

func newBackend(t *testing.T, name string) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{name: name, ln: ln, conns: map[net.Conn]struct{}{}}
	b.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns[c] = struct{}{}
			b.served++
			b.mu.Unlock()
			b.wg.Go(func() { b.echo(c) })
		}
	})
	t.Cleanup(b.kill)
	return b
}

func (b *backend) addr() string { return b.ln.Addr().String() }

func (b *backend) echo(c net.Conn) {
	defer func() {
		_ = c.Close()
		b.mu.Lock()
		delete(b.conns, c)
		b.mu.Unlock()
	}()
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if _, err := io.WriteString(c, b.name+" "+line); err != nil {
			return
		}
	}
}

// open is how many connections the backend holds now.
func (b *backend) open() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.conns)
}

// kill closes the listener and every connection, and waits for the backend's goroutines.
func (b *backend) kill() {
	_ = b.ln.Close()
	b.mu.Lock()
	for c := range b.conns {
		_ = c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

func newProxy(t *testing.T, backends ...*backend) *Proxy {
	t.Helper()
	var addrs []string
	for _, b := range backends {
		addrs = append(addrs, b.addr())
	}
	p, err := New(addrs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// client is one connection through the proxy.
type client struct {
	net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, p *Proxy) *client {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &client{Conn: c, r: bufio.NewReader(c)}
}

// ask sends a line and returns the answer, or the error that ended the connection.
func (c *client) ask(msg string) (string, error) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		return "", err
	}
	line, err := c.r.ReadString('\n')
	return strings.TrimSuffix(line, "\n"), err
}

// ended waits for the connection to be closed by the far side: a read returns EOF (or a reset).
func (c *client) ended(t *testing.T) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.r.ReadByte()
	var timeout net.Error
	if err == nil || (errors.As(err, &timeout) && timeout.Timeout()) {
		t.Fatalf("the connection is still open (read: %v)", err)
	}
}

func TestForwardsEachConnectionToTheNextBackend(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	p := newProxy(t, a, b)
	var got []string
	for i := range 4 {
		c := dial(t, p)
		answer, err := c.ask("ping")
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		got = append(got, answer)
		// Both directions carry more than one message.
		if answer2, err := c.ask("again"); err != nil || answer2 != strings.Fields(answer)[0]+" again" {
			t.Fatalf("connection %d, second line: %q, %v", i, answer2, err)
		}
	}
	if want := []string{"a ping", "b ping", "a ping", "b ping"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("answers %q, want %q", got, want)
	}
}

func TestSkipsABackendThatIsGone(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	p := newProxy(t, a, b)
	onA := dial(t, p)
	if answer, err := onA.ask("ping"); err != nil || answer != "a ping" {
		t.Fatalf("first connection: %q, %v", answer, err)
	}

	a.kill()
	// The client of the killed backend sees its connection end, as a supervisor sees its replica die.
	onA.ended(t)
	// Every new connection lands on the survivor, whichever backend it would have tried first.
	for i := range 3 {
		if answer, err := dial(t, p).ask("ping"); err != nil || answer != "b ping" {
			t.Fatalf("connection %d after the kill: %q, %v", i, answer, err)
		}
	}
}

func TestClosesAClientWhenNoBackendAnswers(t *testing.T) {
	a := newBackend(t, "a")
	p := newProxy(t, a)
	a.kill()
	dial(t, p).ended(t)
}

func TestCloseEndsEveryConnectionAndGoroutine(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	p := newProxy(t, a, b)
	var clients []*client
	for range 4 {
		c := dial(t, p)
		if _, err := c.ask("ping"); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	if a.open()+b.open() != 4 {
		t.Fatalf("the backends hold %d and %d connections, want 4 in all", a.open(), b.open())
	}

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	// Close has waited: not one goroutine of the proxy is left, at once.
	buf := make([]byte, 1<<20)
	if stacks := string(buf[:runtime.Stack(buf, true)]); strings.Contains(stacks, "tcpproxy.(*Proxy)") {
		t.Fatalf("goroutines of the proxy remain after Close:\n%s", stacks)
	}
	for _, c := range clients {
		c.ended(t)
	}
	deadline := time.Now().Add(5 * time.Second)
	for a.open()+b.open() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the backends still hold %d and %d connections after Close", a.open(), b.open())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if c, err := net.Dial("tcp", p.Addr()); err == nil {
		_ = c.Close()
		t.Fatal("the proxy still accepts connections after Close")
	}
	if err := p.Close(); err != nil {
		t.Fatalf("a second Close: %v", err)
	}
}

func TestNewWithoutBackends(t *testing.T) {
	if _, err := New(); err == nil || !strings.Contains(err.Error(), "no backends") {
		t.Fatalf("New() = %v, want an error naming the missing backends", err)
	}
}
