// Package tcpproxy plays a Kubernetes Service in front of several operator replicas on loopback. Each new
// client connection goes to the next backend in turn, as kube-proxy spreads connections over a Service's
// pods; a backend that refuses the dial (its replica was killed) is skipped, so a client that reconnects
// lands on a live one. Bytes are copied both ways unchanged, and a connection ends when either side ends it:
// the WebSocket of a supervisor whose replica dies breaks, as it would through a Service.
package tcpproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// dialTimeout bounds one dial of a backend. A killed replica's loopback port refuses at once; this only
// matters for a backend that accepts nothing, which the next connection then skips too, late.
const dialTimeout = 5 * time.Second

// Proxy listens on 127.0.0.1 and forwards each connection to one of its backends.
type Proxy struct {
	ln       net.Listener
	backends []string
	dialer   net.Dialer
	// ctx is cancelled by Close, which ends dials in progress.
	ctx    context.Context
	cancel context.CancelFunc
	// wg counts the accept loop and every forwarded connection; Close waits for it.
	wg sync.WaitGroup

	mu sync.Mutex
	// next is the backend the next connection tries first.
	next int
	// conns are the open client and backend connections, closed by Close.
	conns  map[net.Conn]struct{}
	closed bool
}

// New listens on a free port of 127.0.0.1 and forwards to backends (host:port), which need not be serving
// yet: a connection that finds none is closed.
func New(backends ...string) (*Proxy, error) {
	if len(backends) == 0 {
		return nil, errors.New("tcpproxy: no backends")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("tcpproxy: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		ln:       ln,
		backends: append([]string(nil), backends...),
		dialer:   net.Dialer{Timeout: dialTimeout},
		ctx:      ctx,
		cancel:   cancel,
		conns:    map[net.Conn]struct{}{},
	}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Addr is the proxy's address, host:port: what the replicas' --external-url names.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Close stops listening, closes every connection in both directions and returns once every goroutine of
// the proxy has ended. Closing twice is harmless.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.cancel()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors, say: wait a little rather than spin.
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		if !p.track(c) {
			return
		}
		// The accept loop is counted in wg, so this Add cannot race with Close's Wait at zero.
		p.wg.Add(1)
		go p.forward(c)
	}
}

// forward carries one client connection to a backend until either side ends it.
func (p *Proxy) forward(client net.Conn) {
	defer p.wg.Done()
	defer p.untrack(client)
	backend := p.dial()
	if backend == nil || !p.track(backend) {
		return
	}
	defer p.untrack(backend)
	done := make(chan struct{}, 2)
	copyTo := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go copyTo(backend, client)
	go copyTo(client, backend)
	// No half-close: the clients here (HTTP, WebSocket) never shut down one direction and keep using the
	// other, and a replica that died must break its clients' connections at once.
	<-done
	_ = client.Close()
	_ = backend.Close()
	<-done
}

// dial connects to the next backend in turn, or to the ones after it when it refuses; nil when none answers.
func (p *Proxy) dial() net.Conn {
	p.mu.Lock()
	start := p.next
	p.next = (p.next + 1) % len(p.backends)
	p.mu.Unlock()
	for i := range p.backends {
		c, err := p.dialer.DialContext(p.ctx, "tcp", p.backends[(start+i)%len(p.backends)])
		if err == nil {
			return c
		}
		if p.ctx.Err() != nil {
			return nil
		}
	}
	return nil
}

// track registers an open connection, or closes it and returns false once the proxy is closed.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

// untrack closes a connection and forgets it.
func (p *Proxy) untrack(c net.Conn) {
	_ = c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}
