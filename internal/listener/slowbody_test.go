package listener_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/linkmesh/linkmesh-operator/internal/collectorconfig"
	"github.com/linkmesh/linkmesh-operator/internal/fleet"
	"github.com/linkmesh/linkmesh-operator/internal/listener"
	"github.com/linkmesh/linkmesh-operator/internal/opampserver"
	"github.com/linkmesh/linkmesh-operator/internal/otlpintake"
	"github.com/linkmesh/linkmesh-operator/test/framework/fakecreds"
	"github.com/linkmesh/linkmesh-operator/test/framework/simagent"
	"github.com/linkmesh/linkmesh-operator/test/framework/slowbody"
)

// stack is the listener with the OpAMP server and the OTLP intake mounted as the operator mounts them, on
// credentials from a fake client.
type stack struct {
	addr      string
	lis       *listener.Server
	fleet     *fleet.Registry
	collector *fakecreds.Collector
}

func startStack(t *testing.T, opts listener.Options) *stack {
	t.Helper()
	g := NewWithT(t)
	coll := fakecreds.NewCollector("ns", "hosts")
	auth, c := fakecreds.Authority(coll)
	fl := fleet.New(fleet.Options{})
	fl.SetDesired(coll.Key, fleet.Desired{Revision: fleet.Revision{Config: fakecreds.Config, Hash: collectorconfig.Hash(fakecreds.Config)}})
	srv, err := opampserver.New(opampserver.Options{Client: c, Credentials: auth, APIReader: c, Fleet: fl, Logger: logr.Discard()})
	g.Expect(err).NotTo(HaveOccurred())
	intake, err := otlpintake.New(otlpintake.Options{Auth: auth, Fleet: fl, Logger: logr.Discard()})
	g.Expect(err).NotTo(HaveOccurred())

	opts.BindAddress = "127.0.0.1:0"
	lis := listener.New(opts)
	lis.Handle(opampserver.Path, srv.Handler())
	lis.Handle(otlpintake.Path, intake)
	lis.AddConnContext(srv.ConnContext())
	g.Expect(lis.Listen()).To(Succeed())

	ctx, cancel := context.WithCancel(log.IntoContext(context.Background(), logr.Discard()))
	done := make(chan struct{}, 2)
	go func() { _ = fl.Start(ctx); done <- struct{}{} }()
	go func() { _ = lis.Start(ctx); done <- struct{}{} }()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-fl.Changes():
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		<-done
	})
	addr := lis.Addr().String()
	g.Eventually(func() int {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}, 5*time.Second, 10*time.Millisecond).Should(Equal(http.StatusOK))
	return &stack{addr: addr, lis: lis, fleet: fl, collector: coll}
}

// openFiles is the number of file descriptors this process holds.
func openFiles(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// TestSlowBodyClients is the child process of TestSlowBodiesDoNotHoldTheListener: the slow clients run
// apart, so the test's /proc/self/fd counts only the server's files.
func TestSlowBodyClients(t *testing.T) {
	if !slowbody.ChildMain(t) {
		t.Skip("runs only as the child process of TestSlowBodiesDoNotHoldTheListener")
	}
}

// TestSlowBodiesDoNotHoldTheListener is issue 15's first finding: 300 connections that announce a body of
// up to 256 KiB and send one byte of it every 2 s, from one attacker address, while a good collector
// connects from another. Without a token they must get their 401 at once; with a valid token the body must
// be cut off at the minimum rate. Either way no connection may outlast the deadline, and the server's open
// files must return to where they were.
func TestSlowBodiesDoNotHoldTheListener(t *testing.T) {
	s := startStack(t, listener.Options{})
	for _, tc := range []struct {
		name, path string
		token      string
		// statuses are the answers a slow client may get: the refusal, or 503 over the per-address cap.
		statuses []int
	}{
		{"unauthenticated OpAMP", opampserver.Path, "", []int{http.StatusUnauthorized, http.StatusServiceUnavailable}},
		{"unauthenticated OTLP", otlpintake.Path, "", []int{http.StatusUnauthorized, http.StatusServiceUnavailable}},
		{"valid token, trickled OpAMP body", opampserver.Path, s.collector.Token, []int{http.StatusRequestTimeout, http.StatusServiceUnavailable}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			baseline := openFiles(t)
			began := time.Now()
			child := slowbody.Start(t, "TestSlowBodyClients", slowbody.Options{
				Addr: s.addr, Path: tc.path, ContentType: "application/x-protobuf", Token: tc.token,
				LocalIP: "127.0.0.2", Conns: 300, MaxContentLength: 256 << 10,
				Interval: 2 * time.Second, GiveUp: 40 * time.Second,
			})
			select {
			case <-child.Ready():
			case <-time.After(30 * time.Second):
				t.Fatal("the slow clients did not connect")
			}
			peak := make(chan int, 1)
			stopSampling := make(chan struct{})
			go func() {
				p := 0
				for {
					p = max(p, openFiles(t))
					select {
					case <-stopSampling:
						peak <- p
						return
					case <-time.After(20 * time.Millisecond):
					}
				}
			}()

			agent := simagent.Start(t, s.addr, s.collector.Token, simagent.Options{Host: "good-" + tc.name})
			g.Eventually(agent.Received, 20*time.Second, 20*time.Millisecond).ShouldNot(BeEmpty(),
				"a good collector must connect and get its config during the attack")

			res, err := child.Wait()
			g.Expect(err).NotTo(HaveOccurred())
			close(stopSampling)
			agent.Stop()
			t.Logf("MEASURE %s: open files %d before, %d at the peak; %d connections: %d closed by the server, "+
				"%d still held at %s; held %s at most; answers %v",
				tc.name, baseline, <-peak, res.Conns, res.ClosedByServer, res.HeldUntilGiveUp, 40*time.Second,
				res.MaxHeld().Round(time.Millisecond), res.Statuses)

			g.Expect(res.DialErrors).To(BeZero())
			g.Expect(res.HeldUntilGiveUp).To(BeZero(), "connections the server held until the clients gave up")
			g.Expect(res.ClosedByServer).To(Equal(300))
			for status := range res.Statuses {
				g.Expect(tc.statuses).To(ContainElement(status), "answers: %v", res.Statuses)
			}
			g.Expect(res.Retry).To(Equal(res.Statuses[http.StatusServiceUnavailable]), "every 503 carries Retry-After")
			g.Eventually(func() int { return openFiles(t) }, 10*time.Second, 50*time.Millisecond).
				Should(BeNumerically("<=", baseline), "open files back to the baseline")
			t.Logf("MEASURE %s: back to %d open files %s after the attack began", tc.name, openFiles(t),
				time.Since(began).Round(time.Millisecond))
		})
	}
}

// TestRefusalWithABodyIsAnsweredNotReset: a client with a wrong token that sends its whole body at once, as
// a collector's exporter does, must read its 401 (or 413), not lose it to a connection reset, although the
// server closes the connection without reading the body.
func TestRefusalWithABodyIsAnsweredNotReset(t *testing.T) {
	s := startStack(t, listener.Options{})
	for _, size := range []int{1 << 10, 200 << 10, 2 << 20} {
		for name, path := range map[string]string{"OpAMP": opampserver.Path, "OTLP": otlpintake.Path} {
			t.Run(fmt.Sprintf("%s %d bytes", name, size), func(t *testing.T) {
				g := NewWithT(t)
				for range 20 {
					req, err := http.NewRequest(http.MethodPost, "http://"+s.addr+path, bytes.NewReader(make([]byte, size)))
					g.Expect(err).NotTo(HaveOccurred())
					req.Header.Set("Content-Type", "application/x-protobuf")
					req.Header.Set("Authorization", "Bearer lmc_wrong")
					resp, err := http.DefaultClient.Do(req)
					g.Expect(err).NotTo(HaveOccurred())
					resp.Body.Close()
					g.Expect(resp.StatusCode).To(Equal(http.StatusUnauthorized))
					g.Expect(resp.Close).To(BeTrue(), "the connection is closed after the refusal")
				}
			})
		}
	}
}
