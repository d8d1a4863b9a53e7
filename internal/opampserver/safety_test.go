package opampserver_test

import (
	"bytes"
	"testing"

	"github.com/google/uuid"
	. "github.com/onsi/gomega"
	"github.com/open-telemetry/opamp-go/protobufs"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
)

// TestOneCredentialCannotFillTheOperator: connections with distinct instance UIDs and one group's token
// are refused past the group's cap, with an error that says why; another group's collector is unaffected.
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

	refused := 0
	for i := range 20 {
		conn := dial(t, token)
		g.Expect(wsSend(conn, fullState(uuid.Must(uuid.NewV7()), "flood"))).To(Succeed())
		resp, err := wsRead(conn)
		g.Expect(err).NotTo(HaveOccurred())
		if e := resp.GetErrorResponse(); e != nil {
			refused++
			g.Expect(i).To(BeNumerically(">=", 5), "the first five fit")
			g.Expect(e.GetErrorMessage()).To(ContainSubstring("already holds as many collectors as it may (spec.maxCollectors)"))
			_, err := wsRead(conn)
			g.Expect(err).To(HaveOccurred(), "a refused connection is closed")
		}
	}
	g.Expect(refused).To(Equal(15))
	g.Expect(fl.Snapshot(key, d.Hash).Counts.Connected).To(Equal(int32(5)))
	// The other group's collector is still served.
	g.Expect(wsSend(other, &protobufs.AgentToServer{InstanceUid: otherUID[:], SequenceNum: 2})).To(Succeed())
	resp, err := wsRead(other)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(resp.GetErrorResponse()).To(BeNil())
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
