package listener

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/gorilla/websocket"
	. "github.com/onsi/gomega"
)

// limitsServer serves /ok (200 after reading the body), /slow (reads the body, then answers after a pause
// longer than any body deadline) and /ws (a WebSocket that echoes).
func limitsServer(t *testing.T, limits Limits) (*Server, string) {
	t.Helper()
	s := New(Options{BindAddress: "127.0.0.1:0", Limits: limits})
	s.Handle("/ok", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			var netErr net.Error
			if errors.As(err, &netErr) && netErr.Timeout() {
				w.WriteHeader(http.StatusRequestTimeout)
				return
			}
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	s.Handle("/slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		select {
		case <-time.After(2 * (limits.BodyRateGrace + limits.BodyReadTimeout)):
		case <-r.Context().Done():
			// net/http cancels the context when its background read of the connection fails.
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	s.Handle("/ws", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		go func() {
			defer conn.Close()
			for {
				kind, msg, err := conn.ReadMessage()
				if err != nil {
					return
				}
				if err := conn.WriteMessage(kind, msg); err != nil {
					return
				}
			}
		}()
	}))
	base, _, _, _ := start(t, s, "http")
	return s, strings.TrimPrefix(base, "http://")
}

// dialFrom opens a connection to addr from the loopback address ip, as a distinct client host would.
func dialFrom(t *testing.T, ip, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// get sends one GET on c and reads the response.
func get(t *testing.T, c net.Conn, r *bufio.Reader, path string) *http.Response {
	t.Helper()
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: test\r\n\r\n", path); err != nil {
		t.Fatal(err)
	}
	return read(t, c, r)
}

func read(t *testing.T, c net.Conn, r *bufio.Reader) *http.Response {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(strings.NewReader(string(body)))
	return resp
}

func expectRefused(g Gomega, resp *http.Response, why string) {
	g.ExpectWithOffset(1, resp.StatusCode).To(Equal(http.StatusServiceUnavailable))
	retry, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	g.ExpectWithOffset(1, err).NotTo(HaveOccurred(), "Retry-After in seconds")
	low, high := 5, 15
	if why == overAddress {
		low, high = 1, 5
	}
	g.ExpectWithOffset(1, retry).To(BeNumerically(">=", low))
	g.ExpectWithOffset(1, retry).To(BeNumerically("<=", high))
	g.ExpectWithOffset(1, resp.Close).To(BeTrue(), "a refused connection is closed")
	body, _ := io.ReadAll(resp.Body)
	g.ExpectWithOffset(1, string(body)).To(ContainSubstring(why))
}

// fillToAddressCap opens idle keep-alive connections from 127.0.0.9 until s holds three quarters of its
// MaxConnections, where the per-address cap starts to apply.
func fillToAddressCap(t *testing.T, s *Server, addr string, already int) {
	t.Helper()
	for range s.Limits().MaxConnections*3/4 - already {
		c := dialFrom(t, "127.0.0.9", addr)
		if code := get(t, c, bufio.NewReader(c), "/ok").StatusCode; code != http.StatusOK {
			t.Fatalf("filling the listener: %d", code)
		}
	}
}

func TestPerAddressCapCountsRequestsInFlightNotIdleOrWebSockets(t *testing.T) {
	g := NewWithT(t)
	s, addr := limitsServer(t, Limits{MaxConnections: 40, MaxConnectionsPerAddress: 2})
	g.Eventually(s.OpenConns, 5*time.Second).Should(BeZero(), "start's readiness probe closed its connection")
	fillToAddressCap(t, s, addr, 2)

	// Two connections from one host that are still sending their headers fill its share.
	var slow []net.Conn
	for range 2 {
		c := dialFrom(t, "127.0.0.2", addr)
		_, err := io.WriteString(c, "GET /ok HTTP/1.1\r\nHost: test\r\n")
		g.Expect(err).NotTo(HaveOccurred())
		slow = append(slow, c)
	}
	g.Eventually(s.OpenConns).Should(BeNumerically(">=", 2))
	third := dialFrom(t, "127.0.0.2", addr)
	expectRefused(g, get(t, third, bufio.NewReader(third), "/ok"), overAddress)

	// Another host is not affected.
	other := dialFrom(t, "127.0.0.3", addr)
	g.Expect(get(t, other, bufio.NewReader(other), "/ok").StatusCode).To(Equal(http.StatusOK))

	// Once answered, the two are idle keep-alive connections, which do not count: the host may open more.
	for _, c := range slow {
		_, err := io.WriteString(c, "\r\n")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(read(t, c, bufio.NewReader(c)).StatusCode).To(Equal(http.StatusOK))
	}
	for range 3 {
		c := dialFrom(t, "127.0.0.2", addr)
		g.Expect(get(t, c, bufio.NewReader(c), "/ok").StatusCode).To(Equal(http.StatusOK))
		c.Close()
	}

	// Nor do established WebSockets: many collectors behind one proxy address stay connected.
	dialer := websocket.Dialer{NetDial: func(_, a string) (net.Conn, error) {
		return (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.4")}}).Dial("tcp", a)
	}}
	for i := range 5 {
		ws, _, err := dialer.Dial("ws://"+addr+"/ws", nil)
		g.Expect(err).NotTo(HaveOccurred(), "WebSocket %d", i)
		t.Cleanup(func() { ws.Close() })
	}
	c := dialFrom(t, "127.0.0.4", addr)
	g.Expect(get(t, c, bufio.NewReader(c), "/ok").StatusCode).To(Equal(http.StatusOK))
}

func TestIdleConnectionOverThePerAddressCapIsRefusedAtItsNextRequest(t *testing.T) {
	g := NewWithT(t)
	s, addr := limitsServer(t, Limits{MaxConnections: 2, MaxConnectionsPerAddress: 1})
	g.Eventually(s.OpenConns, 5*time.Second).Should(BeZero(), "start's readiness probe closed its connection")
	idle := dialFrom(t, "127.0.0.2", addr)
	idleR := bufio.NewReader(idle)
	g.Expect(get(t, idle, idleR, "/ok").StatusCode).To(Equal(http.StatusOK))

	busy := dialFrom(t, "127.0.0.2", addr)
	_, err := io.WriteString(busy, "GET /ok HTTP/1.1\r\nHost: test\r\n")
	g.Expect(err).NotTo(HaveOccurred())
	// The server has accepted it (dialing returns once the kernel has, which a loaded machine's accept
	// loop may take a while to follow).
	g.Eventually(s.OpenConns, 5*time.Second).Should(Equal(2))
	// The kept-alive connection comes back while the host's one slot is taken.
	g.Eventually(func() int {
		return get(t, idle, idleR, "/ok").StatusCode
	}, 5*time.Second).Should(Equal(http.StatusServiceUnavailable))
}

// TestPerAddressCapWaitsForAFullerListener: a fleet reconnecting through one proxy address after a
// failover is not sent to wait out Retry-After while the listener has room.
func TestPerAddressCapWaitsForAFullerListener(t *testing.T) {
	g := NewWithT(t)
	s, addr := limitsServer(t, Limits{MaxConnections: 40, MaxConnectionsPerAddress: 2})
	g.Eventually(s.OpenConns, 5*time.Second).Should(BeZero(), "start's readiness probe closed its connection")

	// Nineteen handshakes in flight at once from one address: more than its cap, with the listener under
	// three quarters full.
	var storm []net.Conn
	for range 19 {
		c := dialFrom(t, "127.0.0.2", addr)
		_, err := io.WriteString(c, "GET /ok HTTP/1.1\r\nHost: test\r\n")
		g.Expect(err).NotTo(HaveOccurred())
		storm = append(storm, c)
	}
	g.Eventually(s.OpenConns).Should(Equal(19))
	for i, c := range storm {
		_, err := io.WriteString(c, "\r\n")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(read(t, c, bufio.NewReader(c)).StatusCode).To(Equal(http.StatusOK), "connection %d", i)
	}

	// With the listener three quarters full, the address' next connections in flight count.
	fillToAddressCap(t, s, addr, 19)
	for range 2 {
		// Held open until the test ends (dialFrom closes them), their headers unfinished.
		c := dialFrom(t, "127.0.0.2", addr)
		_, err := io.WriteString(c, "GET /ok HTTP/1.1\r\nHost: test\r\n")
		g.Expect(err).NotTo(HaveOccurred())
	}
	g.Eventually(s.OpenConns).Should(Equal(32))
	over := dialFrom(t, "127.0.0.2", addr)
	expectRefused(g, get(t, over, bufio.NewReader(over), "/ok"), overAddress)
}

func TestListenerCapCountsEveryConnection(t *testing.T) {
	g := NewWithT(t)
	s, addr := limitsServer(t, Limits{MaxConnections: 3, MaxConnectionsPerAddress: -1})
	g.Eventually(s.OpenConns, 5*time.Second).Should(BeZero(), "start's readiness probe closed its connection")
	var held []net.Conn
	for len(held) < 3 {
		c := dialFrom(t, "127.0.0.2", addr)
		g.Expect(get(t, c, bufio.NewReader(c), "/ok").StatusCode).To(Equal(http.StatusOK))
		held = append(held, c)
	}
	over := dialFrom(t, "127.0.0.3", addr)
	expectRefused(g, get(t, over, bufio.NewReader(over), "/ok"), overListener)

	// A freed slot is taken again.
	held[0].Close()
	g.Eventually(func() int {
		c := dialFrom(t, "127.0.0.3", addr)
		return get(t, c, bufio.NewReader(c), "/ok").StatusCode
	}, 5*time.Second, 50*time.Millisecond).Should(Equal(http.StatusOK))
	g.Expect(s.Limits().MaxConnections).To(Equal(3))
}

func TestDefaultsFitTheOpenFilesLimit(t *testing.T) {
	g := NewWithT(t)
	l := New(Options{}).Limits()
	g.Expect(l.MaxConnections).To(BeNumerically(">", 0))
	g.Expect(l.MaxConnections).To(BeNumerically("<=", DefaultMaxConnections))
	if lim := openFilesLimit(); lim > 0 {
		g.Expect(uint64(l.MaxConnections)).To(BeNumerically("<=", lim*3/4))
	}
	g.Expect(l.MaxConnectionsPerAddress).To(Equal(DefaultMaxConnectionsPerAddress))
	g.Expect(New(Options{Limits: Limits{MaxConnectionsPerAddress: -1}}).Limits().MaxConnectionsPerAddress).
		To(BeNumerically("<", 0), "negative keeps the per-address cap off")
}

// heldToTheEnd is post's answer when the server still held the connection when the client gave up.
const heldToTheEnd = -1

// post sends a body of n bytes on a new connection, in chunks of chunk bytes every interval, and returns the
// status, 0 when the server closed the connection without one, or heldToTheEnd when the server still held
// the connection after 20 s.
func post(t *testing.T, addr, path string, n, chunk int, interval time.Duration) int {
	t.Helper()
	c := dialFrom(t, "127.0.0.2", addr)
	if _, err := fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n", path, n); err != nil {
		t.Fatal(err)
	}
	status := make(chan int, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			status <- 0
			return
		}
		status <- resp.StatusCode
	}()
	giveUp := time.After(20 * time.Second)
	for sent := 0; ; {
		select {
		case s := <-status:
			return s
		case <-giveUp:
			return heldToTheEnd
		case <-time.After(interval):
		}
		if sent < n {
			if _, err := c.Write(make([]byte, min(chunk, n-sent))); err == nil {
				sent += chunk
			}
		}
	}
}

func TestBodyDeadline(t *testing.T) {
	limits := Limits{BodyRateGrace: 300 * time.Millisecond, MinBodyRate: 1000, BodyReadTimeout: 2 * time.Second}
	_, addr := limitsServer(t, limits)
	t.Run("a body that keeps the minimum rate arrives, past the grace", func(t *testing.T) {
		// 2000 bytes/s for 1.2 s: the deadline moves ahead of it.
		NewWithT(t).Expect(post(t, addr, "/ok", 2400, 200, 100*time.Millisecond)).To(Equal(http.StatusOK))
	})
	t.Run("a trickled body is cut off", func(t *testing.T) {
		// 10 bytes/s.
		NewWithT(t).Expect(post(t, addr, "/ok", 2400, 1, 100*time.Millisecond)).To(Equal(http.StatusRequestTimeout))
	})
	t.Run("a body that keeps the rate but outlasts the timeout is cut off", func(t *testing.T) {
		// 2000 bytes/s for 3 s.
		NewWithT(t).Expect(post(t, addr, "/ok", 6000, 200, 100*time.Millisecond)).To(Equal(http.StatusRequestTimeout))
	})
	t.Run("a body never read is drained no longer than the deadline", func(t *testing.T) {
		// /ws answers a POST without reading it, and net/http drains the body before it writes the answer, at
		// the client's pace: 240 s for this one without the deadline.
		NewWithT(t).Expect(post(t, addr, "/ws", 2400, 1, 100*time.Millisecond)).To(Equal(http.StatusBadRequest))
	})
	t.Run("the deadline ends with the body: the handler may take its time", func(t *testing.T) {
		NewWithT(t).Expect(post(t, addr, "/slow", 100, 100, 0)).To(Equal(http.StatusOK))
	})
	t.Run("WebSockets have no body deadline", func(t *testing.T) {
		g := NewWithT(t)
		ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws", nil)
		g.Expect(err).NotTo(HaveOccurred())
		defer ws.Close()
		time.Sleep(limits.BodyRateGrace + limits.BodyReadTimeout)
		g.Expect(ws.WriteMessage(websocket.TextMessage, []byte("still there"))).To(Succeed())
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, msg, err := ws.ReadMessage()
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(string(msg)).To(Equal("still there"))
	})
}

// TestRefusalsAreLoggedSparingly: an attack must not flood the log, and the line must say what to change.
func TestRefusalsAreLoggedSparingly(t *testing.T) {
	g := NewWithT(t)
	var lines []string
	s := New(Options{BindAddress: "127.0.0.1:0"})
	s.log.Store(testLogger(func(msg string) { lines = append(lines, msg) }))
	for range 100 {
		s.logRefusals(overAddress, "127.0.0.2:1234")
	}
	g.Expect(lines).To(HaveLen(1))
	g.Expect(lines[0]).To(ContainSubstring("--max-connections-per-address"))
}

func testLogger(line func(string)) logr.Logger {
	return funcr.New(func(prefix, args string) { line(prefix + " " + args) }, funcr.Options{})
}
