//go:build replicas

package replicas

import (
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/test/framework/testenv"
)

// TestTwoReplicas: collectors on both replicas get the config and its edit, status counts and lists them
// all once, each transition is one Event, and when the replica that is not the leader is killed its
// collectors move to the leader and status is right again, with Reconnected rather than Registered.
func TestTwoReplicas(t *testing.T) {
	g := NewWithT(t)
	c := startReplicas(t, 2)
	ns := testenv.Namespace(t, env.Client, "replicas")
	const name, n = "edge", 24
	token := createCollector(t, ns, name, configA, 100)

	start := time.Now()
	agents := c.connect(t, token, "edge", n)
	g.Eventually(func(g Gomega) {
		for _, a := range agents {
			g.Expect(lastHash(a)).To(Equal(hash(configA)))
		}
	}, timeout, interval).Should(Succeed(), "every collector, on either replica, gets the config")
	measure(t, "2 replicas: all collectors configured", time.Since(start))
	for _, r := range c.replicas {
		g.Expect(on(agents, r)).To(HaveLen(n/2), "%s holds half of them", r.Name)
		g.Eventually(func() int { return connections(r) }, timeout, interval).Should(Equal(n/2), "linkmesh_opamp_connections of %s", r.Name)
	}
	took := waitShows(t, ns, name, agents, hash(configA))
	measure(t, "2 replicas: status shows all, after all configured", took)
	expectEvents(t, ns, name, v1alpha1.EventRegistered, "", n)
	expectEvents(t, ns, name, v1alpha1.EventConfigApplied, hash(configA)[:12], n)

	edit := time.Now()
	editConfig(t, ns, name, configB)
	g.Eventually(func(g Gomega) {
		for _, a := range agents {
			g.Expect(lastHash(a)).To(Equal(hash(configB)))
		}
	}, timeout, interval).Should(Succeed(), "the edit reaches the collectors of both replicas")
	measure(t, "2 replicas: edit reaches all", time.Since(edit))
	took = waitShows(t, ns, name, agents, hash(configB))
	measure(t, "2 replicas: status shows the edit, after it reached all", took)
	expectEvents(t, ns, name, v1alpha1.EventConfigApplied, hash(configB)[:12], n)
	expectQuiet(t, ns, name)

	// kill -9 of the replica that is not the leader.
	victim := c.replicas[1]
	g.Expect(c.leader()).To(Equal(c.replicas[0]))
	moved := on(agents, victim)
	received := map[*agent]int{}
	for _, a := range agents {
		received[a] = len(a.Received())
	}
	most := mostConnected(t, ns, name)
	before := connectsOf(moved)
	kill := time.Now()
	c.kill(victim)
	g.Eventually(func() []*agent { return reconnected(moved, before) }, timeout, interval).Should(HaveLen(len(moved)))
	g.Expect(on(agents, c.replicas[0])).To(HaveLen(n), "the killed replica's collectors reconnect to the leader")
	g.Eventually(func() int { return connections(c.replicas[0]) }, timeout, interval).Should(Equal(n))
	measure(t, "2 replicas, kill -9 of the non-leader: all reconnected", time.Since(kill))
	waitShows(t, ns, name, agents, hash(configB))
	measure(t, "2 replicas, kill -9 of the non-leader: status right again (from the kill)", time.Since(kill))
	t.Logf("MEASURE 2 replicas, kill -9 of the non-leader: status showed up to %d connected of %d meanwhile", most(), n)
	g.Expect(most()).To(Equal(int32(n)), "no collector counted twice while it moved: each replica lists all of its %d", n/2)
	g.Eventually(func(g Gomega) { g.Expect(shares(g, ns)).To(BeEmpty()) }, timeout, interval).Should(Succeed(), "the dead replica's share is collected")
	g.Consistently(func(g Gomega) { expectShows(g, getMC(g, ns, name), agents, hash(configB)) }, 3*time.Second, 250*time.Millisecond).Should(Succeed())

	for _, a := range agents {
		g.Expect(a.Received()).To(HaveLen(received[a]), "a collector that moved is pushed nothing: it runs the config already")
	}
	expectEvents(t, ns, name, v1alpha1.EventReconnected, "", len(moved))
	expectEvents(t, ns, name, v1alpha1.EventRegistered, "", n)
	expectEvents(t, ns, name, v1alpha1.EventConfigApplied, hash(configB)[:12], n)
}

// TestThreeReplicas: three replicas with more collectors than status lists; the leader is killed, a
// survivor takes over, and status is right again.
func TestThreeReplicas(t *testing.T) {
	g := NewWithT(t)
	c := startReplicas(t, 3)
	ns := testenv.Namespace(t, env.Client, "replicas")
	const name, n = "fleet", 90
	token := createCollector(t, ns, name, configA, 100)

	start := time.Now()
	agents := c.connect(t, token, "fleet", n)
	g.Eventually(func(g Gomega) {
		for _, a := range agents {
			g.Expect(lastHash(a)).To(Equal(hash(configA)))
		}
	}, timeout, interval).Should(Succeed())
	measure(t, "3 replicas: all collectors configured", time.Since(start))
	for _, r := range c.replicas {
		g.Expect(on(agents, r)).To(HaveLen(n / 3))
		g.Eventually(func() int { return connections(r) }, timeout, interval).Should(Equal(n/3), "linkmesh_opamp_connections of %s", r.Name)
	}
	waitShows(t, ns, name, agents, hash(configA))
	g.Expect(getMC(g, ns, name).Status.Agents).To(HaveLen(v1alpha1.MaxAgentsInStatus), "the union is bounded")
	expectEvents(t, ns, name, v1alpha1.EventRegistered, "", n)

	edit := time.Now()
	editConfig(t, ns, name, configB)
	g.Eventually(func(g Gomega) {
		for _, a := range agents {
			g.Expect(lastHash(a)).To(Equal(hash(configB)))
		}
	}, timeout, interval).Should(Succeed())
	measure(t, "3 replicas: edit reaches all", time.Since(edit))
	waitShows(t, ns, name, agents, hash(configB))
	expectEvents(t, ns, name, v1alpha1.EventConfigApplied, hash(configB)[:12], n)

	// kill -9 of the leader.
	victim := c.replicas[0]
	g.Expect(c.leader()).To(Equal(victim))
	moved := on(agents, victim)
	most := mostConnected(t, ns, name)
	before := connectsOf(moved)
	kill := time.Now()
	c.kill(victim)
	g.Eventually(func(g Gomega) {
		g.Expect(reconnected(moved, before)).To(HaveLen(len(moved)))
		g.Expect(on(agents, victim)).To(BeEmpty())
		g.Expect(connections(c.replicas[1]) + connections(c.replicas[2])).To(Equal(n))
	}, timeout, interval).Should(Succeed(), "the dead leader's collectors reconnect to the survivors")
	measure(t, "3 replicas, kill -9 of the leader: all reconnected", time.Since(kill))
	g.Eventually(c.leader, timeout, interval).ShouldNot(BeNil())
	measure(t, "3 replicas, kill -9 of the leader: a survivor leads", time.Since(kill))
	waitShows(t, ns, name, agents, hash(configB))
	measure(t, "3 replicas, kill -9 of the leader: status right again (from the kill)", time.Since(kill))
	t.Logf("MEASURE 3 replicas, kill -9 of the leader: status showed up to %d connected of %d meanwhile", most(), n)
	g.Consistently(func(g Gomega) { expectShows(g, getMC(g, ns, name), agents, hash(configB)) }, 3*time.Second, 250*time.Millisecond).Should(Succeed())
	expectEvents(t, ns, name, v1alpha1.EventReconnected, "", len(moved))
	expectEvents(t, ns, name, v1alpha1.EventRegistered, "", n)
}

// TestPausedReplica: a replica that stops renewing its Lease for longer than the Lease (SIGSTOP, as a pod
// starved of CPU or cut off from the API server) drops out of status and its share is collected; once it
// runs again it publishes its share again, whole, and status counts its collectors again, although none of
// them changed.
func TestPausedReplica(t *testing.T) {
	g := NewWithT(t)
	c := startReplicas(t, 2)
	ns := testenv.Namespace(t, env.Client, "paused")
	const name, n = "paused", 10
	token := createCollector(t, ns, name, configA, 100)
	agents := c.connect(t, token, "paused", n)
	waitShows(t, ns, name, agents, hash(configA))
	g.Expect(c.leader()).To(Equal(c.replicas[0]))
	victim := c.replicas[1]
	g.Expect(on(agents, victim)).To(HaveLen(n / 2))

	victim.Signal(syscall.SIGSTOP)
	t.Cleanup(func() { victim.Signal(syscall.SIGCONT) }) // before the cluster stops
	paused := time.Now()
	g.Eventually(func(g Gomega) {
		g.Expect(getMC(g, ns, name).Status.Counts.Connected).To(Equal(int32(n / 2)))
		g.Expect(shares(g, ns)).To(BeEmpty())
	}, timeout, interval).Should(Succeed(), "the paused replica's collectors leave status and its share is collected")
	measure(t, "a paused replica: its share collected (from the pause)", time.Since(paused))

	victim.Signal(syscall.SIGCONT)
	resumed := time.Now()
	waitShows(t, ns, name, agents, hash(configA))
	measure(t, "a paused replica: status right again (from the resume)", time.Since(resumed))
	g.Expect(on(agents, victim)).To(HaveLen(n/2), "its collectors stayed connected to it")
	g.Expect(shares(g, ns)).To(HaveLen(1), "its share is back")
}
