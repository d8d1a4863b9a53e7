//go:build replicas

package replicas

import (
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/test/framework/manager"
	"github.com/linkmesh/linkmesh-operator/test/framework/testenv"
)

// TestRollingRestart stops two of three replicas with SIGTERM, as a rolling restart does, first one that
// is not the leader, then the leader: each answers new handshakes 503 with Retry-After while it drains,
// its collectors land on the remaining replicas, nothing they run changes, and status is right without
// waiting for the stopped replica's Lease to expire.
func TestRollingRestart(t *testing.T) {
	g := NewWithT(t)
	c := startReplicas(t, 3)
	ns := testenv.Namespace(t, env.Client, "replicas")
	const name, n = "rolling", 30
	token := createCollector(t, ns, name, configA, 100)
	agents := c.connect(t, token, "rolling", n)
	g.Eventually(func(g Gomega) {
		for _, a := range agents {
			g.Expect(lastHash(a)).To(Equal(hash(configA)))
		}
	}, timeout, interval).Should(Succeed())
	waitShows(t, ns, name, agents, hash(configA))
	expectEvents(t, ns, name, v1alpha1.EventRegistered, "", n)
	g.Eventually(func(g Gomega) { g.Expect(shares(g, ns)).To(HaveLen(2)) }, timeout, interval).Should(Succeed(), "the two replicas that do not lead publish their shares")
	received := map[*agent]int{}
	for _, a := range agents {
		received[a] = len(a.Received())
	}

	moved := 0
	for _, step := range []struct {
		what   string
		victim *replica
		// shares and leases are those left once the victim stopped.
		shares, leases int
	}{
		{"SIGTERM of a replica that does not lead", c.replicas[1], 1, 1},
		{"SIGTERM of the leader", c.replicas[0], 0, 0},
	} {
		g.Expect(c.leader()).To(Equal(c.replicas[0]))
		leaving := on(agents, step.victim)
		g.Expect(leaving).NotTo(BeEmpty())
		moved += len(leaving)
		most := mostConnected(t, ns, name)
		before := connectsOf(leaving)
		start := time.Now()
		drain(t, c, step.victim, token)
		measure(t, step.what+": the replica exited", time.Since(start))
		g.Eventually(func() []*agent { return reconnected(leaving, before) }, timeout, interval).Should(HaveLen(len(leaving)), "its collectors reconnect")
		g.Expect(on(agents, step.victim)).To(BeEmpty(), "its collectors land on the other replicas")
		first, last := int64(0), int64(0)
		for _, a := range leaving {
			at := a.lastConnect.Load()
			if first == 0 || at < first {
				first = at
			}
			last = max(last, at)
		}
		measure(t, step.what+": its collectors reconnected elsewhere, first to last", time.Duration(last-first))

		waitShows(t, ns, name, agents, hash(configA))
		measure(t, step.what+": status right (from the signal)", time.Since(start))
		t.Logf("MEASURE %s: status showed up to %d connected of %d meanwhile", step.what, most(), n)
		g.Eventually(func(g Gomega) {
			g.Expect(shares(g, ns)).To(HaveLen(step.shares))
			g.Expect(replicaLeases(g, c.operatorNS)).To(HaveLen(step.leases))
		}, timeout, interval).Should(Succeed(), "the stopped replica removed its share and its Lease")
		measure(t, step.what+": its share and Lease removed (from the signal)", time.Since(start))
	}
	g.Eventually(c.leader, timeout, interval).Should(Equal(c.replicas[2]), "the last replica leads")
	waitShows(t, ns, name, agents, hash(configA))
	g.Expect(on(agents, c.replicas[2])).To(HaveLen(n))

	for _, a := range agents {
		g.Expect(a.Received()).To(HaveLen(received[a]), "nothing a collector runs changes: it is pushed no config")
		g.Expect(lastHash(a)).To(Equal(hash(configA)))
	}
	expectEvents(t, ns, name, v1alpha1.EventReconnected, "", moved)
	expectEvents(t, ns, name, v1alpha1.EventRegistered, "", n)
	expectEvents(t, ns, name, v1alpha1.EventConfigApplied, hash(configA)[:12], n)
}

// drain sends r SIGTERM, checks that a new handshake is answered 503 with Retry-After while it drains,
// and waits until it exited with status 0.
func drain(t *testing.T, c *cluster, r *replica, token string) {
	t.Helper()
	g := NewWithT(t)
	c.terminate(r)
	refused, retryAfter := false, ""
	deadline := time.Now().Add(manager.StopGrace)
	for !refused && time.Now().Before(deadline) {
		status, ra, err := handshake(r.Addr(), token)
		if err != nil {
			// The listener is closed: the drain is over.
			break
		}
		if status == http.StatusServiceUnavailable {
			refused, retryAfter = true, ra
		}
		// 101 while the signal is on its way.
	}
	g.Expect(refused).To(BeTrue(), "%s answers a new handshake 503 while it drains", r.Name)
	g.Expect(retryAfter).NotTo(BeEmpty(), "with Retry-After")
	select {
	case <-r.Done():
	case <-time.After(manager.StopGrace):
		t.Fatalf("%s did not exit within %s of SIGTERM", r.Name, manager.StopGrace)
	}
	r.dead.Store(true)
	g.Expect(r.Err()).NotTo(HaveOccurred(), "%s exits with status 0", r.Name)
}
