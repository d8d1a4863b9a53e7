package fleet

import (
	"math"
	"slices"
	"sort"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
)

// Merge is a ManagedCollector's snapshot over every live replica: this replica's own and the others'
// shares, counted against countHash. A share counted against another hash (its replica has not seen the
// accepted config yet) adds its connected and healthy collectors but nothing to the config counts: as far
// as anyone knows they do not run countHash yet. An instance UID listed by two replicas (it moved) is
// listed once: as the replica it is connected to lists it, else as the one that saw it last.
//
// An instance that two replicas list as connected (a replica was killed, and until its Lease expires its
// share still counts the collectors that moved) is counted once too: the entry that loses takes its
// collector out of its replica's counts. A replica lists at most 50 collectors, so this is exact while
// each holds no more than that of the ManagedCollector; beyond, a moved collector that is not listed
// counts twice until the dead replica's share is dropped.
func Merge(countHash string, local Snapshot, shares []v1alpha1.CollectorShare) Snapshot {
	if len(shares) == 0 {
		return local
	}
	out := Snapshot{Counts: local.Counts}
	agents := slices.Clone(local.Agents)
	sources := []source{{agents: local.Agents, countsConfig: true}}
	throughputs := []*v1alpha1.ThroughputStatus{local.Throughput}
	rollouts := []*v1alpha1.ShareRollout{local.Rollout}
	for i := range shares {
		s := &shares[i]
		c := s.Counts
		if s.CountedHash != countHash {
			c.ConfigApplied, c.ConfigFailed, c.ConfigDrifted = 0, 0, 0
		}
		add(&out.Counts, c, 1)
		agents = append(agents, s.Agents...)
		sources = append(sources, source{agents: s.Agents, countsConfig: s.CountedHash == countHash})
		throughputs = append(throughputs, s.Throughput)
		rollouts = append(rollouts, s.Rollout)
	}
	for _, c := range duplicates(countHash, sources) {
		add(&out.Counts, c, -1)
	}
	out.Agents = mergeAgents(agents, v1alpha1.MaxAgentsInStatus)
	out.Throughput = mergeThroughput(throughputs)
	out.Rollout = mergeRollout(countHash, rollouts)
	return out
}

// source is one replica's listed collectors; countsConfig says whether its counts of config outcomes are
// against the merge's hash.
type source struct {
	agents       []v1alpha1.AgentStatus
	countsConfig bool
}

// add adds sign times c to total, never below zero.
func add(total *v1alpha1.AgentCounts, c v1alpha1.AgentCounts, sign int32) {
	sum := func(a, b int32) int32 { return max(a+sign*b, 0) }
	total.Connected = sum(total.Connected, c.Connected)
	total.ReadOnly = sum(total.ReadOnly, c.ReadOnly)
	total.Healthy = sum(total.Healthy, c.Healthy)
	total.ConfigApplied = sum(total.ConfigApplied, c.ConfigApplied)
	total.ConfigFailed = sum(total.ConfigFailed, c.ConfigFailed)
	total.ConfigDrifted = sum(total.ConfigDrifted, c.ConfigDrifted)
}

// duplicates are the counts of the connected entries of instances that another source describes better:
// what their replicas counted once too many.
func duplicates(countHash string, sources []source) []v1alpha1.AgentCounts {
	type entry struct {
		a            *v1alpha1.AgentStatus
		countsConfig bool
	}
	best := map[string]entry{}
	var out []v1alpha1.AgentCounts
	for _, s := range sources {
		for i := range s.agents {
			a := &s.agents[i]
			if !a.Connected {
				continue
			}
			e := entry{a, s.countsConfig}
			was, ok := best[a.InstanceUID]
			switch {
			case !ok:
				best[a.InstanceUID] = e
				continue
			case better(a, was.a):
				best[a.InstanceUID] = e
				e = was
			}
			out = append(out, countOf(countHash, e.a, e.countsConfig))
		}
	}
	return out
}

// countOf is what one listed connected collector adds to its replica's counts, as count counts it.
func countOf(countHash string, a *v1alpha1.AgentStatus, countsConfig bool) v1alpha1.AgentCounts {
	c := v1alpha1.AgentCounts{Connected: 1}
	if a.Healthy {
		c.Healthy = 1
	}
	switch {
	case a.ConfigStatus == v1alpha1.ConfigStatusReadOnly:
		c.ReadOnly = 1
	case !countsConfig || countHash == "" || a.ConfigHash != countHash:
	case a.ConfigStatus == v1alpha1.ConfigStatusDrifted:
		c.ConfigDrifted = 1
	case a.ConfigStatus == v1alpha1.ConfigStatusApplied:
		c.ConfigApplied = 1
	case a.ConfigStatus == v1alpha1.ConfigStatusFailed:
		c.ConfigFailed = 1
	}
	return c
}

func troubledStatus(a *v1alpha1.AgentStatus) bool {
	return a.Connected && (!a.Healthy || a.ConfigStatus == v1alpha1.ConfigStatusFailed || a.ConfigStatus == v1alpha1.ConfigStatusDrifted)
}

func seen(a *v1alpha1.AgentStatus) time.Time {
	if a.LastSeen == nil {
		return time.Time{}
	}
	return a.LastSeen.Time
}

// mergeAgents orders the replicas' lists as one replica orders its own: troubled first, then the most
// recently seen, then by instance UID; an instance listed twice keeps the entry that says where it is.
func mergeAgents(agents []v1alpha1.AgentStatus, limit int) []v1alpha1.AgentStatus {
	index := map[string]int{}
	var out []v1alpha1.AgentStatus
	for _, a := range agents {
		if i, ok := index[a.InstanceUID]; ok {
			if better(&a, &out[i]) {
				out[i] = a
			}
			continue
		}
		index[a.InstanceUID] = len(out)
		out = append(out, a)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := &out[i], &out[j]
		if ta, tb := troubledStatus(a), troubledStatus(b); ta != tb {
			return ta
		}
		if sa, sb := seen(a), seen(b); !sa.Equal(sb) {
			return sa.After(sb)
		}
		return a.InstanceUID < b.InstanceUID
	})
	if len(out) > limit {
		out = out[:limit]
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// better says whether a, an instance's entry from one replica, describes it rather than b from another.
// Connected beats disconnected: the collector is connected to a's replica, and b's saw it leave, perhaps
// only after it had arrived at a's (a lost connection is noticed when the replica next writes to it, or
// after the idle timeout), so b's entry can be the later one and still be wrong; the counts, which only
// count connected collectors, agree with a. Between two alike, the one seen last: a replica killed
// with the collector connected still lists it until its share expires.
func better(a, b *v1alpha1.AgentStatus) bool {
	if a.Connected != b.Connected {
		return a.Connected
	}
	return seen(a).After(seen(b))
}

// mergeThroughput sums the replicas' throughput: rates add up, as each collector reports to one replica.
func mergeThroughput(ts []*v1alpha1.ThroughputStatus) *v1alpha1.ThroughputStatus {
	var out *v1alpha1.ThroughputStatus
	type compKey struct {
		kind   v1alpha1.ComponentKind
		name   string
		signal v1alpha1.TelemetrySignal
	}
	comps := map[compKey]*v1alpha1.ComponentThroughput{}
	var order []compKey
	for _, t := range ts {
		if t == nil {
			continue
		}
		if out == nil {
			out = &v1alpha1.ThroughputStatus{}
		}
		out.Reporting += t.Reporting
		if t.LastUpdated != nil && (out.LastUpdated == nil || t.LastUpdated.After(out.LastUpdated.Time)) {
			lu := *t.LastUpdated
			out.LastUpdated = &lu
		}
		out.Spans = addSignal(out.Spans, t.Spans)
		out.MetricPoints = addSignal(out.MetricPoints, t.MetricPoints)
		out.LogRecords = addSignal(out.LogRecords, t.LogRecords)
		for _, c := range t.Components {
			k := compKey{c.Kind, c.Name, c.Signal}
			m := comps[k]
			if m == nil {
				m = &v1alpha1.ComponentThroughput{Kind: c.Kind, Name: c.Name, Signal: c.Signal}
				comps[k] = m
				order = append(order, k)
			}
			m.Rate = addQuantity(m.Rate, c.Rate)
			m.ErrorRate = addQuantity(m.ErrorRate, c.ErrorRate)
			m.QueueSize = addInt(m.QueueSize, c.QueueSize)
			m.QueueCapacity = addInt(m.QueueCapacity, c.QueueCapacity)
		}
	}
	if out == nil {
		return nil
	}
	for _, k := range order {
		out.Components = append(out.Components, *comps[k])
	}
	sort.SliceStable(out.Components, func(i, j int) bool {
		a, b := &out.Components[i], &out.Components[j]
		ta, tb := value(a.Rate)+value(a.ErrorRate), value(b.Rate)+value(b.ErrorRate)
		if ta != tb {
			return ta > tb
		}
		if a.Kind != b.Kind {
			return a.Kind > b.Kind // Receiver before Exporter
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.Signal < b.Signal
	})
	if len(out.Components) > v1alpha1.MaxComponentsInStatus {
		out.Components = out.Components[:v1alpha1.MaxComponentsInStatus]
	}
	return out
}

func addSignal(a, b *v1alpha1.SignalThroughput) *v1alpha1.SignalThroughput {
	if b == nil {
		return a
	}
	if a == nil {
		a = &v1alpha1.SignalThroughput{}
	}
	a.Accepted = addQuantity(a.Accepted, b.Accepted)
	a.Refused = addQuantity(a.Refused, b.Refused)
	a.Sent = addQuantity(a.Sent, b.Sent)
	a.Failed = addQuantity(a.Failed, b.Failed)
	return a
}

func addQuantity(a, b *resource.Quantity) *resource.Quantity {
	if b == nil {
		return a
	}
	if a == nil {
		c := b.DeepCopy()
		return &c
	}
	c := a.DeepCopy()
	c.Add(*b)
	return &c
}

func addInt(a, b *int64) *int64 {
	if b == nil {
		return a
	}
	if a == nil {
		v := *b
		return &v
	}
	v := *a + *b
	return &v
}

func value(q *resource.Quantity) float64 {
	if q == nil {
		return 0
	}
	return q.AsApproximateFloat64()
}

// mergeRollout sums what the replicas' collectors did with the revision countHash; the candidates and
// their ranks, which do not depend on the revision, come from every replica.
func mergeRollout(countHash string, rs []*v1alpha1.ShareRollout) *v1alpha1.ShareRollout {
	var out *v1alpha1.ShareRollout
	var ranks []string
	for _, r := range rs {
		if r == nil {
			continue
		}
		if out == nil {
			out = &v1alpha1.ShareRollout{Revision: countHash}
		}
		out.Candidates = addInt32(out.Candidates, r.Candidates)
		out.Canaries = addInt32(out.Canaries, r.Canaries)
		ranks = append(ranks, r.LowestRanks...)
		if r.Revision != countHash {
			continue
		}
		out.Offered = addInt32(out.Offered, r.Offered)
		out.Updated = addInt32(out.Updated, r.Updated)
		out.Failed = addInt32(out.Failed, r.Failed)
		if r.LastFailure != nil {
			out.LastFailure = r.LastFailure
		}
	}
	if out == nil {
		return nil
	}
	// Fixed-width hex sorts as the ranks do.
	slices.Sort(ranks)
	ranks = slices.Compact(ranks)
	out.LowestRanks = ranks[:min(len(ranks), maxLowestRanks)]
	return out
}

func addInt32(a, b int32) int32 {
	if s := int64(a) + int64(b); s <= math.MaxInt32 {
		return int32(s)
	}
	return math.MaxInt32
}
