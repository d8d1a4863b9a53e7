package fleet

import (
	"errors"
	"math"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/bounded"
	"github.com/linkmesh/linkmesh-operator/internal/credential"
)

// Bounds and windows of the throughput computation.
const (
	// MaxGap is the longest interval a rate is computed over. The supervisor exports every 60 s; a longer
	// silence averages a burst into a misleading flat rate, so the next export only starts a new baseline.
	MaxGap = 5 * time.Minute
	// StaleAfter drops an agent's rates from its group when it has not exported for three intervals.
	StaleAfter = 3*time.Minute + 10*time.Second
	// maxSeriesPerAgent bounds what one collector can make the operator remember.
	maxSeriesPerAgent = 256
)

// ErrNotMember means own metrics name an instance that is not an agent of the poster's group here.
var ErrNotMember = errors.New("not a collector of this group on this replica")

// ErrOwnMetricsDisabled means the agent's group has spec.supervisor.ownMetrics=false.
var ErrOwnMetricsDisabled = errors.New("own metrics are disabled for this ManagedCollector")

// Outcome is what a collector counter counts.
type Outcome string

// The outcomes of the collector's internal counters.
const (
	OutcomeAccepted Outcome = "accepted"
	OutcomeRefused  Outcome = "refused"
	OutcomeSent     Outcome = "sent"
	OutcomeFailed   Outcome = "failed"
	// OutcomeQueueSize and OutcomeQueueCapacity are the exporter queue gauges: not rates.
	OutcomeQueueSize     Outcome = "queue_size"
	OutcomeQueueCapacity Outcome = "queue_capacity"
)

// Sample is one data point of a collector's internal metrics, as the OTLP intake decoded it.
type Sample struct {
	// Kind is the component's kind; receivers count accepted/refused, exporters sent/failed/queue.
	Kind v1alpha1.ComponentKind
	// Component is the receiver or exporter ID.
	Component string
	// Signal is what is counted; empty for a queue gauge without a data_type.
	Signal v1alpha1.TelemetrySignal
	// Outcome is the counter or gauge.
	Outcome Outcome
	// Value is the cumulative count, or the gauge's value.
	Value float64
	// Start is the counter's start time, zero when unknown.
	Start time.Time
	// Time is when the collector took the value.
	Time time.Time
}

// SeriesKey identifies one counter or gauge of one component.
type SeriesKey struct {
	Kind      v1alpha1.ComponentKind
	Component string
	Signal    v1alpha1.TelemetrySignal
	Outcome   Outcome
}

func (k SeriesKey) gauge() bool {
	return k.Outcome == OutcomeQueueSize || k.Outcome == OutcomeQueueCapacity
}

// series is a cumulative counter's last value and the rate between it and the one before.
type series struct {
	value float64
	start time.Time
	at    time.Time
	rate  float64
	rated bool
}

// observe moves the series to a new point and says whether the rate changed. Duplicates and out-of-order
// points are ignored; a lower value or a later start time is a restart of the collector; a gap longer
// than MaxGap starts over without a rate. A first point, or the first after a restart, is rated over the
// time since its start when that is known and within MaxGap: a collector's first export, about 60 s after
// it starts, then already shows a rate.
func (s *series) observe(p Sample) bool {
	if !s.at.IsZero() && !p.Time.After(s.at) {
		return false
	}
	before, wasRated := s.rate, s.rated
	fromStart := !p.Start.IsZero() && p.Time.Sub(p.Start) > 0 && p.Time.Sub(p.Start) <= MaxGap
	switch {
	case s.at.IsZero():
		s.rated = false
		if fromStart {
			s.rate, s.rated = p.Value/p.Time.Sub(p.Start).Seconds(), true
		}
	case p.Value < s.value || (!p.Start.IsZero() && !s.start.IsZero() && p.Start.After(s.start)):
		// A restart: everything since Start is new, if Start is known and after our last point.
		s.rated = false
		if fromStart && !p.Start.Before(s.at) {
			s.rate, s.rated = p.Value/p.Time.Sub(p.Start).Seconds(), true
		}
	case p.Time.Sub(s.at) > MaxGap:
		s.rated = false
	default:
		s.rate, s.rated = (p.Value-s.value)/p.Time.Sub(s.at).Seconds(), true
	}
	if !s.rated {
		s.rate = 0
	}
	s.value, s.start, s.at = p.Value, p.Start, p.Time
	return s.rated != wasRated || s.rate != before
}

// ownMetrics is one agent's throughput state.
type ownMetrics struct {
	series map[SeriesKey]*series
	// gauges are the latest queue values.
	gauges map[SeriesKey]float64
	// received is when the operator last received an export, by its own clock.
	received time.Time
}

// observe feeds one export of one agent into its rate state. It sums the points of a series within the
// export first: a receiver reports one point per transport.
func (o *ownMetrics) observe(samples []Sample) bool {
	sums := map[SeriesKey]*Sample{}
	var order []SeriesKey
	for _, s := range samples {
		k := SeriesKey{Kind: s.Kind, Component: s.Component, Signal: s.Signal, Outcome: s.Outcome}
		a := sums[k]
		if a == nil {
			a = &s
			sums[k] = a
			order = append(order, k)
			continue
		}
		a.Value += s.Value
		if s.Time.After(a.Time) {
			a.Time = s.Time
		}
		if s.Start.After(a.Start) {
			a.Start = s.Start
		}
	}
	changed := false
	for _, k := range order {
		p := *sums[k]
		if math.IsNaN(p.Value) || math.IsInf(p.Value, 0) || p.Value < 0 {
			continue
		}
		if k.gauge() {
			if old, ok := o.gauges[k]; !ok || old != p.Value {
				if ok || len(o.gauges)+len(o.series) < maxSeriesPerAgent {
					o.gauges[k] = p.Value
					changed = true
				}
			}
			continue
		}
		s := o.series[k]
		if s == nil {
			if len(o.gauges)+len(o.series) >= maxSeriesPerAgent {
				continue
			}
			s = &series{}
			o.series[k] = s
		}
		if s.observe(p) {
			changed = true
		}
	}
	return changed
}

// RecordOwnMetrics feeds an export of the agent uid into its rates. scope is who posted it: an agent
// connected here must be a member of scope's group through the same credential, a pod's ManagedCollector
// or a host's EnrollmentToken, so one collector's token cannot post as another. An agent not connected
// here is taken as connected to another replica while Options.RemoteOwnMetrics says there are others,
// within the group's cap; a host's token only for the instance that redeemed it (the caller checks).
func (r *Registry) RecordOwnMetrics(scope credential.Membership, uid string, samples []Sample) error {
	now := r.opts.Clock.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.agents[uid]
	var g *group
	var o *ownMetrics
	switch {
	case a != nil:
		if a.membership.Collector != scope.Collector || a.membership.Source != scope.Source ||
			(scope.Source == credential.SourceHost && a.membership.Token != scope.Token) {
			return ErrNotMember
		}
		g = r.groups[a.membership.Collector]
		if a.own == nil {
			a.own = newOwnMetrics()
		}
		o = a.own
	case r.opts.RemoteOwnMetrics():
		g = r.groupLocked(scope.Collector)
		o = g.remote[uid]
		if o == nil {
			if len(g.remote) >= g.maxAgents() {
				return ErrNotMember
			}
			o = newOwnMetrics()
			g.remote[uid] = o
		}
	default:
		return ErrNotMember
	}
	if g != nil && g.desired != nil && !g.desired.OwnMetrics {
		return ErrOwnMetricsDisabled
	}
	o.received = now
	o.observe(samples)
	if g != nil {
		if a != nil {
			g.failDataLocked(a, o)
		}
		// lastUpdated moves with every export, so signal always; the signal is coalesced per group.
		r.changedLocked(g)
	}
	return nil
}

func newOwnMetrics() *ownMetrics {
	return &ownMetrics{series: map[SeriesKey]*series{}, gauges: map[SeriesKey]float64{}}
}

// expireOwnMetricsLocked forgets the own metrics of agents silent for StaleAfter and signals their groups,
// so status stops showing rates nobody reports any more. Sweep calls it.
func (r *Registry) expireOwnMetricsLocked(now time.Time) {
	for _, a := range r.agents {
		if a.own == nil || now.Sub(a.own.received) <= StaleAfter {
			continue
		}
		a.own = nil
		if g := r.groups[a.membership.Collector]; g != nil {
			r.changedLocked(g)
		}
	}
	for _, g := range r.groups {
		for uid, o := range g.remote {
			if now.Sub(o.received) > StaleAfter || r.agents[uid] != nil {
				// Stale, or the agent connected here since: its own state counts from now on.
				delete(g.remote, uid)
				r.changedLocked(g)
			}
		}
	}
}

// OwnMetricsAction is what the OpAMP server sends an agent about its own_metrics destination.
type OwnMetricsAction int

const (
	// OwnMetricsNone sends nothing.
	OwnMetricsNone OwnMetricsAction = iota
	// OwnMetricsOffer sends the destination.
	OwnMetricsOffer
	// OwnMetricsWithdraw sends an empty destination: the supervisor persists an offer across restarts, so
	// spec.supervisor.ownMetrics=false must take it back.
	OwnMetricsWithdraw
)

// OfferOwnMetrics says what to send the agent about own_metrics in this answer: the offer once per
// connection after its first full state when its group wants own metrics and the agent has the capability
// bit, a withdrawal once when the group does not; again when spec.supervisor.ownMetrics changes, with the
// agent's next message. The first offer to an agent records the OwnMetricsOffered event.
func (r *Registry) OfferOwnMetrics(uid string, link Link, capability uint64) OwnMetricsAction {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.agents[uid]
	if a == nil || !a.connected || a.link != link || !a.described || a.caps&capability == 0 {
		return OwnMetricsNone
	}
	g := r.groups[a.membership.Collector]
	if g == nil || g.desired == nil {
		return OwnMetricsNone
	}
	want := OwnMetricsWithdraw
	if g.desired.OwnMetrics {
		want = OwnMetricsOffer
	}
	if a.ownMetricsSent == want {
		return OwnMetricsNone
	}
	a.ownMetricsSent = want
	if want == OwnMetricsOffer && !a.ownMetricsOffered {
		// Once per agent, not per connection: the supervisor keeps the offer across its reconnects.
		a.ownMetricsOffered = true
		g.events.add(v1alpha1.EventOwnMetricsOffered, corev1.EventTypeNormal, "", "", a)
		r.changedLocked(g)
	}
	return want
}

// ComponentRates is one component's share of a group's throughput.
type ComponentRates struct {
	Kind      v1alpha1.ComponentKind
	Component string
	Signal    v1alpha1.TelemetrySignal
	// Rate is accepted (receiver) or sent (exporter) per second; ErrorRate refused or failed.
	Rate, ErrorRate float64
	// HasRate and HasQueue say which fields are known.
	HasRate, HasQueue        bool
	QueueSize, QueueCapacity float64
}

// GroupThroughput is a group's throughput summed over its connected agents with recent own metrics.
type GroupThroughput struct {
	// Reporting is the number of agents summed.
	Reporting int
	// LastUpdated is the latest export received from any of them.
	LastUpdated time.Time
	// Rates are per signal and outcome; only outcomes with a rate are present.
	Rates map[v1alpha1.TelemetrySignal]map[Outcome]float64
	// Components are all components, busiest first; the status keeps MaxComponentsInStatus.
	Components []ComponentRates
}

func (r *Registry) throughputLocked(g *group, now time.Time) *GroupThroughput {
	t := &GroupThroughput{Rates: map[v1alpha1.TelemetrySignal]map[Outcome]float64{}}
	comps := map[SeriesKey]*ComponentRates{}
	comp := func(k SeriesKey) *ComponentRates {
		ck := SeriesKey{Kind: k.Kind, Component: k.Component, Signal: k.Signal}
		c := comps[ck]
		if c == nil {
			c = &ComponentRates{Kind: k.Kind, Component: k.Component, Signal: k.Signal}
			comps[ck] = c
		}
		return c
	}
	var reporting []*ownMetrics
	for _, a := range g.members {
		if a.own != nil && a.connected && now.Sub(a.own.received) <= StaleAfter {
			reporting = append(reporting, a.own)
		}
	}
	for _, o := range g.remote {
		if now.Sub(o.received) <= StaleAfter {
			reporting = append(reporting, o)
		}
	}
	for _, o := range reporting {
		t.Reporting++
		if o.received.After(t.LastUpdated) {
			t.LastUpdated = o.received
		}
		for k, s := range o.series {
			if !s.rated {
				continue
			}
			if t.Rates[k.Signal] == nil {
				t.Rates[k.Signal] = map[Outcome]float64{}
			}
			t.Rates[k.Signal][k.Outcome] += s.rate
			c := comp(k)
			c.HasRate = true
			if k.Outcome == OutcomeAccepted || k.Outcome == OutcomeSent {
				c.Rate += s.rate
			} else {
				c.ErrorRate += s.rate
			}
		}
		for k, v := range o.gauges {
			c := comp(k)
			c.HasQueue = true
			if k.Outcome == OutcomeQueueSize {
				c.QueueSize += v
			} else {
				c.QueueCapacity += v
			}
		}
	}
	if t.Reporting == 0 {
		return nil
	}
	for _, c := range comps {
		t.Components = append(t.Components, *c)
	}
	sort.Slice(t.Components, func(i, j int) bool {
		a, b := t.Components[i], t.Components[j]
		if a.Rate+a.ErrorRate != b.Rate+b.ErrorRate {
			return a.Rate+a.ErrorRate > b.Rate+b.ErrorRate
		}
		if a.Kind != b.Kind {
			return a.Kind > b.Kind // Receiver before Exporter
		}
		if a.Component != b.Component {
			return a.Component < b.Component
		}
		return a.Signal < b.Signal
	})
	return t
}

// Throughputs returns every group's throughput as of now, for the Prometheus collector.
func (r *Registry) Throughputs() map[types.NamespacedName]*GroupThroughput {
	now := r.opts.Clock.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[types.NamespacedName]*GroupThroughput{}
	for key, g := range r.groups {
		if t := r.throughputLocked(g, now); t != nil {
			out[key] = t
		}
	}
	return out
}

// Status renders the throughput for status.throughput, bounded.
func (t *GroupThroughput) Status() *v1alpha1.ThroughputStatus {
	if t == nil {
		return nil
	}
	s := &v1alpha1.ThroughputStatus{Reporting: int32(min(t.Reporting, math.MaxInt32))}
	if !t.LastUpdated.IsZero() {
		lu := metav1.NewTime(t.LastUpdated)
		s.LastUpdated = &lu
	}
	sig := func(signal v1alpha1.TelemetrySignal) *v1alpha1.SignalThroughput {
		m := t.Rates[signal]
		if len(m) == 0 {
			return nil
		}
		return &v1alpha1.SignalThroughput{
			Accepted: quantity(m, OutcomeAccepted), Refused: quantity(m, OutcomeRefused),
			Sent: quantity(m, OutcomeSent), Failed: quantity(m, OutcomeFailed),
		}
	}
	s.Spans, s.MetricPoints, s.LogRecords = sig(v1alpha1.SignalSpans), sig(v1alpha1.SignalMetricPoints), sig(v1alpha1.SignalLogRecords)
	for _, c := range t.Components {
		if len(s.Components) >= v1alpha1.MaxComponentsInStatus {
			break
		}
		ct := v1alpha1.ComponentThroughput{Kind: c.Kind, Name: bounded.Truncate(c.Component, 256), Signal: c.Signal}
		if c.HasRate {
			ct.Rate, ct.ErrorRate = perSecond(c.Rate), perSecond(c.ErrorRate)
		}
		if c.HasQueue {
			size, capacity := int64(math.Round(c.QueueSize)), int64(math.Round(c.QueueCapacity))
			ct.QueueSize, ct.QueueCapacity = &size, &capacity
		}
		s.Components = append(s.Components, ct)
	}
	return s
}

func quantity(m map[Outcome]float64, o Outcome) *resource.Quantity {
	v, ok := m[o]
	if !ok {
		return nil
	}
	return perSecond(v)
}

// perSecond renders a rate with millis precision; a tiny negative from float sums is zero.
func perSecond(v float64) *resource.Quantity {
	milli := int64(math.Round(v * 1000))
	if milli < 0 {
		milli = 0
	}
	return resource.NewMilliQuantity(milli, resource.DecimalSI)
}
