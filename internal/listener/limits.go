package listener

import (
	"context"
	"crypto/tls"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/go-logr/logr"

	"github.com/linkmesh/linkmesh-operator/internal/bounded"
)

// Defaults of Limits.
const (
	// DefaultMaxConnections leaves room for 10,000 collectors on WebSockets and their own-metrics posts. It
	// is lowered to three quarters of the process' open-files limit when that is lower, so the listener
	// refuses before the process cannot open a file or reach the API server.
	DefaultMaxConnections = 16384
	// DefaultMaxConnectionsPerAddress bounds the connections one address may have opening or carrying a
	// request at once while the listener is three quarters full or more. Idle keep-alive connections and established
	// WebSockets do not count, so many collectors behind one proxy or NAT address fit: each of their
	// requests takes milliseconds.
	DefaultMaxConnectionsPerAddress = 256
	// DefaultBodyReadTimeout is the longest any request body may take to arrive.
	DefaultBodyReadTimeout = 30 * time.Second
	// DefaultMinBodyRate, in bytes per second, is the slowest a body may arrive after its grace.
	DefaultMinBodyRate = 4 << 10
	// DefaultBodyRateGrace is the head start of every body before the minimum rate applies: a slow start, a
	// slow link or a busy client still gets its first bytes through.
	DefaultBodyRateGrace = 5 * time.Second
)

// maxRefusing bounds the connections over a cap that are kept just long enough to be answered 503; beyond
// it a connection over a cap is closed at once, so refusals cannot exhaust open files either.
const maxRefusing = 256

// Limits bound what one client can hold on the listener. Zero values take the defaults.
type Limits struct {
	// MaxConnections caps the connections the listener holds at once, WebSockets included (--max-connections).
	// A connection over it is answered 503 with Retry-After and closed.
	MaxConnections int
	// MaxConnectionsPerAddress caps the connections of one remote address (an IPv6 /64) that are opening or
	// carrying a request at once (--max-connections-per-address); idle keep-alive connections and upgraded
	// WebSockets do not count. The cap applies only while the listener holds three quarters of
	// MaxConnections or more: it keeps one address from taking the slots that are left, and does not slow a
	// reconnect storm through one proxy address while there is room. Negative: no per-address cap. A
	// connection over it is answered 503 with a short Retry-After (1 to 5 s) and closed. Behind a proxy every
	// client has the proxy's address.
	MaxConnectionsPerAddress int
	// BodyReadTimeout bounds the time a request body may take (--body-read-timeout).
	BodyReadTimeout time.Duration
	// MinBodyRate is the slowest a body may arrive, in bytes per second after BodyRateGrace (--min-body-rate):
	// a body must have sent MinBodyRate × (elapsed − BodyRateGrace) bytes at any time.
	MinBodyRate int64
	// BodyRateGrace is the head start of a body before MinBodyRate applies.
	BodyRateGrace time.Duration
}

func (l Limits) withDefaults() Limits {
	if l.MaxConnections <= 0 {
		l.MaxConnections = DefaultMaxConnections
		if lim := openFilesLimit(); lim > 0 && lim*3/4 < uint64(l.MaxConnections) {
			l.MaxConnections = max(int(lim*3/4), 1)
		}
	}
	if l.MaxConnectionsPerAddress == 0 {
		l.MaxConnectionsPerAddress = DefaultMaxConnectionsPerAddress
	}
	if l.BodyReadTimeout <= 0 {
		l.BodyReadTimeout = DefaultBodyReadTimeout
	}
	if l.MinBodyRate <= 0 {
		l.MinBodyRate = DefaultMinBodyRate
	}
	if l.BodyRateGrace <= 0 {
		l.BodyRateGrace = DefaultBodyRateGrace
	}
	return l
}

// Why a connection is refused.
const (
	overListener = "max-connections"
	overAddress  = "max-connections-per-address"
)

// errDrop is admit's answer for a connection to close at once, without an answer: over a cap while
// maxRefusing others wait for theirs.
var errDrop = errors.New("over a connection cap")

// admit registers a new connection, counted against the caps or marked refused. A connection accepted
// while the server stops is net.ErrClosed: closeConns may have run already.
func (s *Server) admit(tc *trackedConn) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping.Load() {
		return net.ErrClosed
	}
	switch {
	case s.admitted >= s.limits.MaxConnections:
		tc.refused = overListener
	case s.addressCapped() && s.busy[tc.addr] >= s.limits.MaxConnectionsPerAddress:
		tc.refused = overAddress
	}
	if tc.refused != "" {
		if s.refusing >= maxRefusing {
			s.dropped.Add(1)
			return errDrop
		}
		s.refusing++
	} else {
		tc.counted = true
		s.admitted++
		s.busyLocked(tc)
	}
	s.conns[tc] = struct{}{}
	return nil
}

// addressCapped tells whether the per-address cap applies now: it is set and the listener holds three
// quarters of MaxConnections or more. Below that a flood from one address cannot keep others out, while a
// storm of legitimate handshakes through one proxy or NAT address (a fleet reconnecting after a failover)
// would be sent to wait out Retry-After for nothing: with the cap always on, 10,000 simulated collectors
// from one address took 17.6 s to connect instead of 3.9 s. s.mu is held.
func (s *Server) addressCapped() bool {
	return s.limits.MaxConnectionsPerAddress > 0 && s.admitted >= s.limits.MaxConnections*3/4
}

// release forgets a closed connection.
func (s *Server) release(tc *trackedConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.conns[tc]; !ok {
		return
	}
	delete(s.conns, tc)
	if !tc.counted {
		s.refusing--
		return
	}
	s.admitted--
	s.idleLocked(tc)
}

// busyLocked puts tc into its address' busy count.
func (s *Server) busyLocked(tc *trackedConn) {
	if !tc.busy {
		tc.busy = true
		s.busy[tc.addr]++
	}
}

// idleLocked takes tc out of its address' busy count.
func (s *Server) idleLocked(tc *trackedConn) {
	if !tc.busy {
		return
	}
	tc.busy = false
	if s.busy[tc.addr]--; s.busy[tc.addr] <= 0 {
		delete(s.busy, tc.addr)
	}
}

// connState follows connections between requests: an idle keep-alive connection and a hijacked WebSocket
// leave their address' busy count; a connection that starts its next request comes back into it, and is
// refused if that puts its address over the cap.
func (s *Server) connState(c net.Conn, state http.ConnState) {
	tc := tracked(c)
	if tc == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.conns[tc]; !ok || !tc.counted {
		return
	}
	switch state {
	case http.StateIdle, http.StateHijacked:
		s.idleLocked(tc)
	case http.StateActive:
		if tc.busy {
			return
		}
		s.busyLocked(tc)
		if s.addressCapped() && s.busy[tc.addr] > s.limits.MaxConnectionsPerAddress {
			tc.refused = overAddress
		}
	}
}

// refuse answers a request on a connection over a cap: 503 with a Retry-After spread so that the clients
// refused together do not come back together, and the connection closed without reading the body. Over
// the listener's cap a slot frees only as collectors leave: 5 to 15 s. Over the per-address cap one of the
// address' requests in flight, which take milliseconds, frees it: 1 to 5 s.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, why string) {
	s.refusals.Add(1)
	s.logRefusals(why, r.RemoteAddr)
	bounded.SkipBody(w, r)
	retry := 5 + rand.IntN(11)
	if why == overAddress {
		retry = 1 + rand.IntN(5)
	}
	w.Header().Set("Connection", "close")
	w.Header().Set("Retry-After", strconv.Itoa(retry))
	http.Error(w, "too many connections ("+why+"); retry later", http.StatusServiceUnavailable)
}

// refusalLogInterval spaces the log lines about refusals: an attack must not flood the log.
const refusalLogInterval = 10 * time.Second

// logRefusals logs at most one line per refusalLogInterval, with the number of refusals since the last.
func (s *Server) logRefusals(why, remote string) {
	now := time.Now().UnixNano()
	last := s.lastRefusalLog.Load()
	if now-last < int64(refusalLogInterval) || !s.lastRefusalLog.CompareAndSwap(last, now) {
		return
	}
	n := s.refusals.Swap(0)
	s.logger().Info("Refusing connections over a cap; behind a proxy, see --max-connections-per-address",
		"cap", why, "remoteAddress", remote, "refusedSinceLastLog", n, "closedUnanswered", s.dropped.Swap(0),
		"maxConnections", s.limits.MaxConnections, "maxConnectionsPerAddress", s.limits.MaxConnectionsPerAddress)
}

func (s *Server) logger() logr.Logger {
	if l, ok := s.log.Load().(logr.Logger); ok {
		return l
	}
	return logr.Discard()
}

// addressKey is what the per-address cap counts by: the IP, or for IPv6 its /64, which one host usually
// holds whole.
func addressKey(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	if ip4 := tcp.IP.To4(); ip4 != nil {
		return ip4.String()
	}
	return tcp.IP.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// tracked is the trackedConn under c, which net/http hands out as is or wrapped in TLS.
func tracked(c net.Conn) *trackedConn {
	if t, ok := c.(*tls.Conn); ok {
		c = t.NetConn()
	}
	tc, _ := c.(*trackedConn)
	return tc
}

type connKey struct{}

// connOf is the trackedConn of a request's connection.
func connOf(ctx context.Context) *trackedConn {
	tc, _ := ctx.Value(connKey{}).(*trackedConn)
	return tc
}

// refusedReason reads tc.refused under the lock connState writes it with.
func (s *Server) refusedReason(tc *trackedConn) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return tc.refused
}
