package fleet

import (
	"testing"

	. "github.com/onsi/gomega"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/credential"
)

// readOnly is the first message of a plain collector with the opamp extension: it reports its health and
// effective config but does not accept remote config.
func readOnlyReport(host string) Report {
	rep := full(host)
	rep.AcceptsRemoteConfig = false
	rep.Health = &Health{Healthy: true}
	return rep
}

// TestReadOnlyMembersAreListedCountedAndLeftAlone: a collector without AcceptsRemoteConfig is listed as a
// read-only member, counted apart, never sent a config, never healed, and announced once as such.
func TestReadOnlyMembersAreListedCountedAndLeftAlone(t *testing.T) {
	g := NewWithT(t)
	r, _ := newTestRegistry(t)
	d := desired(driftDesired)
	r.SetDesired(group1, d)
	m := credential.Membership{Collector: group1, Source: credential.SourcePod}
	ro := &fakeLink{}
	reply := r.Observe(uid(1), m, readOnlyReport("legacy"), ro)
	g.Expect(reply.Config).To(BeNil(), "never sent a config")
	managed := full("managed")
	managed.Health = &Health{Healthy: true}
	g.Expect(r.Observe(uid(2), m, managed, &fakeLink{}).Config).NotTo(BeNil())
	r.Observe(uid(2), m, Report{SequenceNum: 2, RemoteConfig: &RemoteConfigReport{Hash: d.Hash, Status: v1alpha1.ConfigStatusApplied}}, &fakeLink{})

	// Its effective config lacks everything of the desired one: that is no drift, it runs its own.
	eff, h := driftEmpty, "own"
	r.Observe(uid(1), m, Report{SequenceNum: 2, EffectiveConfig: &eff, EffectiveConfigHash: &h}, ro)
	r.SetDesired(group1, desired(driftDesired+"# v2\n"))
	g.Expect(ro.notified.Load()).To(BeZero(), "a new config is not announced to it")
	_, ok := r.Take(uid(1), ro)
	g.Expect(ok).To(BeFalse())

	s := r.Snapshot(group1, d.Hash)
	g.Expect(s.Counts).To(Equal(v1alpha1.AgentCounts{Connected: 2, ReadOnly: 1, Healthy: 2, ConfigApplied: 1}))
	var entry v1alpha1.AgentStatus
	for _, a := range s.Agents {
		if a.HostName == "legacy" {
			entry = a
		}
	}
	g.Expect(entry.ConfigStatus).To(Equal(v1alpha1.ConfigStatusReadOnly))
	g.Expect(entry.ConfigHash).To(Equal("own"), "the hash of what it runs")
	g.Expect(entry.Message).To(ContainSubstring("read-only member"))
	evs := r.DrainEvents(group1)
	var registered []string
	for _, e := range evs {
		g.Expect(e.Reason).NotTo(Equal(v1alpha1.EventConfigDrift))
		if e.Reason == v1alpha1.EventRegistered {
			g.Expect(e.Type).To(Equal("Normal"))
			registered = append(registered, e.Message)
		}
	}
	g.Expect(registered).To(ConsistOf(
		"Collector legacy (instance "+uid(1)+") registered as a read-only member: it does not accept remote config, so it keeps running its own",
		"Collector managed (instance "+uid(2)+") registered"))
}

// TestCapabilitiesChange: a collector that stops accepting remote config becomes a read-only member (and is
// healed no more); one that starts accepting it is managed and gets the config.
func TestCapabilitiesChange(t *testing.T) {
	g := NewWithT(t)
	r, _ := newTestRegistry(t)
	d := desired("a: 1\n")
	r.SetDesired(group1, d)
	m := credential.Membership{Collector: group1, Source: credential.SourcePod}
	link := &fakeLink{}
	r.Observe(uid(1), m, full("a"), link)
	r.Observe(uid(1), m, Report{SequenceNum: 2, RemoteConfig: &RemoteConfigReport{Hash: d.Hash, Status: v1alpha1.ConfigStatusApplied}}, link)
	r.DrainEvents(group1)

	r.Observe(uid(1), m, Report{SequenceNum: 3, Capabilities: 1, AcceptsRemoteConfig: false}, link)
	s := r.Snapshot(group1, d.Hash)
	g.Expect(s.Counts.ReadOnly).To(Equal(int32(1)))
	g.Expect(s.Counts.ConfigApplied).To(BeZero(), "its config is its own now")
	g.Expect(s.Agents[0].ConfigStatus).To(Equal(v1alpha1.ConfigStatusReadOnly))
	g.Expect(reasons(r.DrainEvents(group1))).To(ConsistOf(v1alpha1.EventReadOnlyMember))
	d2 := desired("a: 2\n")
	r.SetDesired(group1, d2)
	_, ok := r.Take(uid(1), link)
	g.Expect(ok).To(BeFalse())

	reply := r.Observe(uid(1), m, Report{SequenceNum: 4, Capabilities: 3, AcceptsRemoteConfig: true}, link)
	g.Expect(reply.Config).NotTo(BeNil(), "managed again: it gets the config")
	g.Expect(reply.Config.Hash).To(Equal(d2.Hash))
	g.Expect(r.Snapshot(group1, d2.Hash).Counts.ReadOnly).To(BeZero())
}
