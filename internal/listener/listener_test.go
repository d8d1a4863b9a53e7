package listener

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	. "github.com/onsi/gomega"
)

// start runs s until the test ends and returns its base URL once /readyz answers.
// The returned channel is closed when Start returned, with its error in *result.
func start(t *testing.T, s *Server, scheme string) (string, context.CancelFunc, <-chan struct{}, *error) {
	t.Helper()
	g := NewWithT(t)
	g.Expect(s.Listen()).To(Succeed())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var result error
	go func() {
		result = s.Start(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	base := scheme + "://" + s.Addr().String()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	// Tests that count connections must not see the probe's.
	defer client.CloseIdleConnections()
	g.Eventually(func() int {
		resp, err := client.Get(base + "/readyz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}, 5*time.Second, 10*time.Millisecond).Should(Equal(http.StatusOK))
	return base, cancel, done, &result
}

func TestListenFailsFastOnATakenPort(t *testing.T) {
	g := NewWithT(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	defer taken.Close()
	s := New(Options{BindAddress: taken.Addr().String()})
	g.Expect(s.Listen()).To(MatchError(ContainSubstring("address already in use")))
	g.Expect(New(Options{BindAddress: "127.0.0.1:0", CertFile: "only-cert.pem"}).Listen()).
		To(MatchError(ContainSubstring("must be set together")))
	g.Expect(New(Options{BindAddress: "127.0.0.1:0", CertFile: "missing.pem", KeyFile: "missing.key"}).Listen()).
		To(MatchError(ContainSubstring("TLS key pair")))
}

func TestShutdownClosesHijackedConnections(t *testing.T) {
	g := NewWithT(t)
	s := New(Options{BindAddress: "127.0.0.1:0", ShutdownTimeout: 2 * time.Second})
	s.Handle("/ws", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		// Hold the connection like opamp-go does, on a goroutine of its own after the handler returned.
		go func() {
			for {
				if _, _, err := conn.ReadMessage(); err != nil {
					return
				}
			}
		}()
	}))
	base, cancel, done, result := start(t, s, "http")
	conn, _, err := websocket.DefaultDialer.Dial("ws"+base[len("http"):]+"/ws", nil)
	g.Expect(err).NotTo(HaveOccurred())
	defer conn.Close()
	g.Eventually(s.OpenConns).Should(BeNumerically(">=", 1))

	healthz, err := http.Get(base + "/healthz")
	g.Expect(err).NotTo(HaveOccurred())
	healthz.Body.Close()
	g.Expect(healthz.StatusCode).To(Equal(http.StatusOK))

	cancel()
	g.Eventually(done, 5*time.Second).Should(BeClosed())
	g.Expect(*result).NotTo(HaveOccurred())
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err = conn.ReadMessage()
	g.Expect(err).To(HaveOccurred())
	var netErr net.Error
	g.Expect(errors.As(err, &netErr) && netErr.Timeout()).To(BeFalse(), "closed by the server, not timed out: %v", err)
	g.Expect(s.OpenConns()).To(BeZero())
	g.Expect(s.Ready(nil)).To(HaveOccurred())
}

func TestWritesToAPeerThatStopsReadingTimeOut(t *testing.T) {
	g := NewWithT(t)
	s := New(Options{BindAddress: "127.0.0.1:0", WriteTimeout: 200 * time.Millisecond})
	failed := make(chan time.Duration, 1)
	s.Handle("/ws", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		go func() {
			payload := make([]byte, 64<<10)
			for {
				began := time.Now()
				// gorilla clears the deadline before each write; the listener must put one back.
				if err := conn.WriteMessage(websocket.BinaryMessage, payload); err != nil {
					failed <- time.Since(began)
					return
				}
			}
		}()
	}))
	base, _, _, _ := start(t, s, "http")
	conn, _, err := websocket.DefaultDialer.Dial("ws"+base[len("http"):]+"/ws", nil)
	g.Expect(err).NotTo(HaveOccurred())
	defer conn.Close()
	// Never read: the socket buffers fill and the server's write blocks.
	var blocked time.Duration
	g.Eventually(failed, 30*time.Second).Should(Receive(&blocked))
	g.Expect(blocked).To(BeNumerically("<", 5*time.Second))
}

func TestTLS(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writeSelfSigned(t, certFile, keyFile)
	s := New(Options{BindAddress: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile})
	base, _, _, _ := start(t, s, "https")

	conn, err := tls.Dial("tcp", base[len("https://"):], &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}})
	g.Expect(err).NotTo(HaveOccurred())
	defer conn.Close()
	g.Expect(conn.ConnectionState().NegotiatedProtocol).To(Equal("http/1.1"), "WebSocket upgrades need HTTP/1.1")
}

func writeSelfSigned(t *testing.T, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
}
