package opampserver_test

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	. "github.com/onsi/gomega"
	"github.com/open-telemetry/opamp-go/protobufs"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
)

// TestOneCredentialCannotFillTheOperator: connections with distinct instance UIDs and one group's token
// are refused past the group's cap, with an error that says why; the credential's next upgrades from that
// address are refused before any WebSocket, with a Retry-After, while the group is full; another group's
// collector is unaffected.
func TestOneCredentialCannotFillTheOperator(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	key, token := newCollector(t, ns, "leaky", configA)
	d := desired(configA)
	d.MaxAgents = 5
	fl.SetDesired(key, d)
	_, otherToken := newCollector(t, ns, "other", configA)
	other := dial(t, otherToken)
	otherUID := uuid.Must(uuid.NewV7())
	g.Expect(wsSend(other, fullState(otherUID, "other"))).To(Succeed())
	_, err := wsRead(other)
	g.Expect(err).NotTo(HaveOccurred())

	var members []*websocket.Conn
	var memberUIDs []uuid.UUID
	for range 5 {
		conn := dial(t, token)
		uid := uuid.Must(uuid.NewV7())
		g.Expect(wsSend(conn, fullState(uid, "flood"))).To(Succeed())
		resp, err := wsRead(conn)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(resp.GetErrorResponse()).To(BeNil(), "the first five fit")
		members, memberUIDs = append(members, conn), append(memberUIDs, uid)
	}
	// The sixth is refused at its first message, where its instance UID is known.
	conn := dial(t, token)
	g.Expect(wsSend(conn, fullState(uuid.Must(uuid.NewV7()), "flood"))).To(Succeed())
	resp, err := wsRead(conn)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(resp.GetErrorResponse().GetErrorMessage()).To(ContainSubstring("already holds as many collectors as it may (spec.maxCollectors)"))
	_, err = wsRead(conn)
	g.Expect(err).To(HaveOccurred(), "a refused connection is closed")

	// The supervisor's client would come straight back: it is refused at the upgrade now, with a Retry-After
	// it honours, and costs no WebSocket.
	for range 20 {
		c, hs, err := websocket.DefaultDialer.Dial("ws://"+addr+"/v1/opamp", header("Bearer "+token))
		g.Expect(err).To(HaveOccurred())
		g.Expect(c).To(BeNil())
		g.Expect(hs.StatusCode).To(Equal(http.StatusServiceUnavailable))
		retry, err := strconv.Atoi(hs.Header.Get("Retry-After"))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(retry).To(BeNumerically(">=", 5))
		g.Expect(retry).To(BeNumerically("<=", 15))
		body, _ := io.ReadAll(hs.Body)
		g.Expect(string(body)).To(ContainSubstring("ManagedCollector " + key.String() + " already holds as many collectors as it may (spec.maxCollectors)"))
	}
	g.Expect(fl.Snapshot(key, d.Hash).Counts.Connected).To(Equal(int32(5)))
	// The other group's collector is still served, and its credential still upgrades.
	g.Expect(wsSend(other, &protobufs.AgentToServer{InstanceUid: otherUID[:], SequenceNum: 2})).To(Succeed())
	resp, err = wsRead(other)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(resp.GetErrorResponse()).To(BeNil())
	g.Expect(dialStatus(t, "Bearer "+otherToken)).To(Equal(http.StatusSwitchingProtocols))

	// After the window, a collector the group holds reconnects from that address.
	saved := clk.Now()
	clk.SetTime(saved.Add(10 * time.Second))
	defer clk.SetTime(saved)
	_ = members[0].Close()
	back := dial(t, token)
	g.Expect(wsSend(back, fullState(memberUIDs[0], "flood"))).To(Succeed())
	resp, err = wsRead(back)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(resp.GetErrorResponse()).To(BeNil(), "a member of the group is no new collector")

	// Room in the group: new collectors are admitted again.
	d.MaxAgents = 10
	fl.SetDesired(key, d)
	g.Expect(dialStatus(t, "Bearer "+token)).To(Equal(http.StatusSwitchingProtocols))

	g.Eventually(func(g Gomega) {
		events := fl.DrainEvents(key)
		reasons := []string{}
		for _, e := range events {
			reasons = append(reasons, e.Reason)
		}
		g.Expect(reasons).To(ContainElement(v1alpha1.EventTooManyCollectors))
	}).Should(Succeed())
}

// TestInstanceUIDsCannotBeTakenOver: a credential of another namespace presenting a live collector's
// instance UID, or a pod credential presenting a host's redeemed UID, is given a UID of its own; the victim
// stays connected in its own group.
func TestInstanceUIDsCannotBeTakenOver(t *testing.T) {
	g := NewWithT(t)
	nsA, nsB := newNamespace(t), newNamespace(t)
	victimKey, victimToken := newCollector(t, nsA, "victim", configA)
	attackerKey, attackerToken := newCollector(t, nsB, "attacker", configA)

	uid := uuid.Must(uuid.NewV7())
	victim := dial(t, victimToken)
	g.Expect(wsSend(victim, fullState(uid, "victim"))).To(Succeed())
	_, err := wsRead(victim)
	g.Expect(err).NotTo(HaveOccurred())

	attacker := dial(t, attackerToken)
	g.Expect(wsSend(attacker, fullState(uid, "attacker"))).To(Succeed())
	resp, err := wsRead(attacker)
	g.Expect(err).NotTo(HaveOccurred())
	newUID := resp.GetAgentIdentification().GetNewInstanceUid()
	g.Expect(newUID).To(HaveLen(16), "the OpAMP answer to a duplicate instance UID")
	g.Expect(bytes.Equal(newUID, uid[:])).To(BeFalse())

	// The victim is still connected and still its group's.
	g.Expect(wsSend(victim, &protobufs.AgentToServer{InstanceUid: uid[:], SequenceNum: 2})).To(Succeed())
	_, err = wsRead(victim)
	g.Expect(err).NotTo(HaveOccurred(), "the victim's connection is not closed")
	s := fl.Snapshot(victimKey, "")
	g.Expect(s.Counts.Connected).To(Equal(int32(1)))
	g.Expect(s.Agents[0].InstanceUID).To(Equal(uid.String()))
	g.Expect(s.Agents[0].HostName).To(Equal("victim"))
	g.Expect(fl.Snapshot(attackerKey, "").Agents).To(BeEmpty())

	// With the UID it was given, the other collector is its own group's.
	assigned, err := uuid.FromBytes(newUID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(wsSend(attacker, fullState(assigned, "attacker"))).To(Succeed())
	resp, err = wsRead(attacker)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(resp.GetErrorResponse()).To(BeNil())
	g.Expect(fl.Snapshot(attackerKey, "").Agents).To(ConsistOf(HaveField("InstanceUID", assigned.String())))

	// A host's UID belongs to the EnrollmentToken it redeemed, for a pod credential too.
	host := uuid.Must(uuid.NewV7())
	now := metav1.Now()
	newToken(t, nsA, "web-01", "victim", v1alpha1.EnrollmentTokenStatus{
		Phase: v1alpha1.TokenRedeemed, RedeemedBy: &v1alpha1.RedeemedBy{InstanceUID: host.String()}, RedeemedAt: &now,
	}, false)
	pod := dial(t, victimToken)
	g.Expect(wsSend(pod, fullState(host, "pod"))).To(Succeed())
	resp, err = wsRead(pod)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(resp.GetAgentIdentification().GetNewInstanceUid()).To(HaveLen(16))
	for _, a := range fl.Snapshot(victimKey, "").Agents {
		g.Expect(a.InstanceUID).NotTo(Equal(host.String()))
	}
}
