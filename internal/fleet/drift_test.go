package fleet

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/credential"
)

const driftDesired = "receivers:\n  otlp:\nexporters:\n  debug:\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n"

// What the supervisor's empty first composition leaves the collector running: its own pieces only.
const driftEmpty = "extensions:\n  opamp:\nreceivers:\n  nop:\nexporters:\n  nop:\nservice:\n  extensions: [opamp]\n  pipelines:\n    traces/nop:\n      receivers: [nop]\n      exporters: [nop]\n"

// The desired config as the supervisor merges it: plus its extension and telemetry.
const driftMerged = "extensions:\n  opamp:\nreceivers:\n  otlp:\nexporters:\n  debug:\nservice:\n  extensions: [opamp]\n  telemetry:\n    logs:\n      encoding: json\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n"

func applied(hash string, effective string) Report {
	return Report{RemoteConfig: &RemoteConfigReport{Hash: hash, Status: v1alpha1.ConfigStatusApplied}, EffectiveConfig: &effective}
}

// TestDriftIsDetectedAndHealed walks the heal of the supervisor's startup race: APPLIED with an effective
// config lacking the pipeline is drift; the heal pushes an empty config, then the desired one, then restarts.
func TestDriftIsDetectedAndHealed(t *testing.T) {
	g := NewWithT(t)
	r, clk := newTestRegistry(t)
	d := desired(driftDesired)
	r.SetDesired(group1, d)
	m := credential.Membership{Collector: group1, Source: credential.SourcePod}
	link := &fakeLink{}
	seq := uint64(1)
	observe := func(rep Report) Reply {
		rep.SequenceNum = seq
		seq++
		return r.Observe(uid(1), m, rep, link)
	}
	caps := full("node-a")
	caps.Capabilities = restartCapability | 1
	reply := observe(caps)
	g.Expect(reply.Config.Hash).To(Equal(d.Hash))

	// The supervisor merged the config properly: no drift.
	observe(applied(d.Hash, driftMerged))
	snap := r.Snapshot(group1, d.Hash)
	g.Expect(snap.Counts.ConfigApplied).To(Equal(int32(1)))
	g.Expect(snap.Counts.ConfigDrifted).To(BeZero())

	// The collector now runs without the pushed pipeline while the supervisor still says APPLIED.
	reply = observe(applied(d.Hash, driftEmpty))
	snap = r.Snapshot(group1, d.Hash)
	g.Expect(snap.Counts.ConfigApplied).To(BeZero(), "a drifted agent does not count as applied")
	g.Expect(snap.Counts.ConfigDrifted).To(Equal(int32(1)))
	g.Expect(snap.Agents[0].ConfigStatus).To(Equal(v1alpha1.ConfigStatusDrifted))
	g.Expect(snap.Agents[0].Message).To(ContainSubstring(`pipeline "traces"`))
	g.Expect(r.DrainEvents(group1)).To(ContainElement(HaveField("Reason", v1alpha1.EventConfigDrift)))
	// Heal, step 1: an empty config, which makes the supervisor stop the collector.
	g.Expect(reply.Config).NotTo(BeNil())
	g.Expect(reply.Config.Config).To(BeEmpty())
	g.Expect(reply.Config.Hash).To(Equal(emptyRevision.Hash))

	// Step 2: once the empty config is in, the desired one again.
	reply = observe(Report{RemoteConfig: &RemoteConfigReport{Hash: emptyRevision.Hash, Status: v1alpha1.ConfigStatusApplied}})
	g.Expect(reply.Config).NotTo(BeNil())
	g.Expect(reply.Config.Hash).To(Equal(d.Hash))

	// It still drifts: within the backoff nothing more is sent; after it, the next heal.
	reply = observe(applied(d.Hash, driftEmpty))
	g.Expect(reply.Config).To(BeNil())
	g.Expect(reply.Restart).To(BeFalse())
	clk.Step(healBackoff + time.Second)
	reply = observe(Report{})
	g.Expect(reply.Config).NotTo(BeNil(), "second attempt clears again")
	observe(Report{RemoteConfig: &RemoteConfigReport{Hash: emptyRevision.Hash, Status: v1alpha1.ConfigStatusApplied}})
	observe(applied(d.Hash, driftEmpty))
	clk.Step(2*healBackoff + time.Second)
	reply = observe(Report{})
	g.Expect(reply.Restart).To(BeTrue(), "then a Restart command")
	g.Expect(reply.Config).To(BeNil())

	// The effective config matches again: healed, with an Event, and counted as applied.
	r.DrainEvents(group1) // drain
	observe(applied(d.Hash, driftMerged))
	snap = r.Snapshot(group1, d.Hash)
	g.Expect(snap.Counts.ConfigApplied).To(Equal(int32(1)))
	g.Expect(snap.Counts.ConfigDrifted).To(BeZero())
	g.Expect(snap.Agents[0].ConfigStatus).To(Equal(v1alpha1.ConfigStatusApplied))
	g.Expect(r.DrainEvents(group1)).To(ContainElement(HaveField("Reason", v1alpha1.EventConfigHealed)))
}

// TestHealIsBounded: after maxHealAttempts the operator stops re-applying and the agent stays drifted.
func TestHealIsBounded(t *testing.T) {
	g := NewWithT(t)
	r, clk := newTestRegistry(t)
	d := desired(driftDesired)
	r.SetDesired(group1, d)
	m := credential.Membership{Collector: group1, Source: credential.SourceHost}
	seq := uint64(1)
	heals := 0
	observe := func(rep Report) Reply {
		rep.SequenceNum = seq
		seq++
		reply := r.Observe(uid(2), m, rep, nil)
		if reply.Restart || (reply.Config != nil && reply.Config.Hash == emptyRevision.Hash) {
			heals++
		}
		return reply
	}
	observe(full("host"))
	for range 20 {
		reply := observe(applied(d.Hash, driftEmpty))
		if reply.Config != nil && reply.Config.Hash == emptyRevision.Hash {
			observe(Report{RemoteConfig: &RemoteConfigReport{Hash: emptyRevision.Hash, Status: v1alpha1.ConfigStatusApplied}})
		}
		clk.Step(10 * time.Minute)
	}
	g.Expect(heals).To(Equal(maxHealAttempts))
	g.Expect(r.Snapshot(group1, d.Hash).Counts.ConfigDrifted).To(Equal(int32(1)))
}
