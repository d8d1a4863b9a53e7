package fleet

import (
	"context"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/collectorconfig"
	"github.com/linkmesh/linkmesh-operator/internal/credential"
)

// Defaults of Options and bounds of the registry.
const (
	// DefaultIdleTimeout is three missed heartbeats of the supervisor's default 30 s interval.
	DefaultIdleTimeout = 90 * time.Second
	// DefaultRetention keeps a disconnected agent in status long enough for a user to see why it left.
	DefaultRetention = 15 * time.Minute
	// DefaultSignalInterval is the budget of one status write per ManagedCollector per second.
	DefaultSignalInterval = time.Second
	// DefaultMaxAgents caps a group's agents until its desired state is known.
	DefaultMaxAgents = 1000
	// UndescribedRetention is how long an agent that never sent a full state is kept: a connection that
	// only ever sends a UID costs memory and tells a user nothing.
	UndescribedRetention = 30 * time.Second
	// ApplyGrace is added to the supervisor's config_apply_timeout before a pushed config counts as applied
	// or not: the supervisor reports the outcome at the timeout, and the report travels.
	ApplyGrace = 10 * time.Second
	// DefaultUnhealthyGrace is how long an agent may be unhealthy without an error before it is a warning,
	// and, in a progressive rollout, before it fails the revision it runs.
	DefaultUnhealthyGrace = 30 * time.Second
	// MaxEffectiveConfig bounds the effective config the registry parses for drift: a config is at most
	// 256 KiB (the CRD's bound), to which the supervisor adds little.
	MaxEffectiveConfig = 512 << 10
	// defaultApplyTimeout is the supervisor's own config_apply_timeout.
	defaultApplyTimeout = 5 * time.Second
	// sweepPeriod bounds how late a persisting unhealthy agent or a stale one is noticed.
	sweepPeriod = 5 * time.Second
)

// Options tune a Registry; zero values take the defaults.
type Options struct {
	// IdleTimeout marks an agent disconnected when it has sent nothing for this long. Plain-HTTP agents
	// have no connection to lose, so this is their only disconnect detection.
	IdleTimeout time.Duration
	// Retention is how long a disconnected agent stays listed before it is forgotten.
	Retention time.Duration
	// SignalInterval is the minimum time between two change signals of one ManagedCollector.
	SignalInterval time.Duration
	// Clock is injected by tests.
	Clock clock.WithTickerAndDelayedExecution
	// UnhealthyGrace is how long an agent may be unhealthy without an error before it is a warning and
	// fails a rollout's revision; default DefaultUnhealthyGrace.
	UnhealthyGrace time.Duration
	// RemoteOwnMetrics says whether own metrics for an agent that is not connected here are taken: true
	// while other replicas serve OpAMP too, whose agents' exports may arrive here. Nil takes none.
	RemoteOwnMetrics func() bool
}

// ChangeEvent is what the registry sends on Changes: the ManagedCollector whose agents changed.
type ChangeEvent = event.TypedGenericEvent[*v1alpha1.ManagedCollector]

// Registry is the Fleet: the agents connected to this replica, keyed by instance UID, and what every
// ManagedCollector's agents should run. Nothing in it is shared with other replicas, so it assumes
// nothing about them: an agent's state is what it reported here. The package documentation describes
// its locks.
type Registry struct {
	opts Options

	mu     sync.Mutex
	agents map[string]*agent
	groups map[types.NamespacedName]*group

	// pending holds signalled groups until Start's loop hands them to Changes.
	pendingMu sync.Mutex
	pending   map[types.NamespacedName]struct{}
	kick      chan struct{}
	changes   chan ChangeEvent
	signals   atomic.Uint64

	// closing is set by CloseAll: connections this replica closes on its way out are no collector leaving.
	closing atomic.Bool

	// shapes share the agents' effective config structures.
	shapes shapeTable
}

var _ Fleet = (*Registry)(nil)

// group is one ManagedCollector's share of the registry.
type group struct {
	key     types.NamespacedName
	desired *Desired
	// shapes are the structures of the revisions in use, by hash, parsed once for drift checks.
	shapes  map[string]*collectorconfig.Shape
	members map[string]*agent
	// remote are own metrics of agents connected to other replicas, by instance UID.
	remote map[string]*ownMetrics
	events eventLog
	// lastSignal and timerSet coalesce change signals to one per SignalInterval.
	lastSignal time.Time
	timerSet   bool
}

func (g *group) maxAgents() int {
	switch {
	case g.desired == nil:
		return DefaultMaxAgents
	case g.desired.MaxAgents <= 0:
		return math.MaxInt
	}
	return g.desired.MaxAgents
}

func (g *group) applyTimeout() time.Duration {
	if g.desired == nil || g.desired.ApplyTimeout <= 0 {
		return defaultApplyTimeout
	}
	return g.desired.ApplyTimeout
}

// New returns an empty Registry. Run it with Start (it is a manager.Runnable) for idle detection and
// change signals.
func New(opts Options) *Registry {
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.Retention <= 0 {
		opts.Retention = DefaultRetention
	}
	if opts.SignalInterval <= 0 {
		opts.SignalInterval = DefaultSignalInterval
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.UnhealthyGrace <= 0 {
		opts.UnhealthyGrace = DefaultUnhealthyGrace
	}
	if opts.RemoteOwnMetrics == nil {
		opts.RemoteOwnMetrics = func() bool { return false }
	}
	return &Registry{
		opts:    opts,
		agents:  map[string]*agent{},
		groups:  map[types.NamespacedName]*group{},
		pending: map[types.NamespacedName]struct{}{},
		kick:    make(chan struct{}, 1),
		changes: make(chan ChangeEvent, 128),
	}
}

// Changes signals that a group's agents changed. Each group is signalled at most once per SignalInterval,
// however many agents it has.
func (r *Registry) Changes() <-chan ChangeEvent { return r.changes }

// NeedLeaderElection is false: every replica serves OpAMP and must report and expire its own agents.
func (r *Registry) NeedLeaderElection() bool { return false }

// Start delivers change signals and sweeps agents until ctx is done. The two run apart: idle detection
// must go on even while nobody reads Changes.
func (r *Registry) Start(ctx context.Context) error {
	period := min(r.opts.IdleTimeout/4, sweepPeriod)
	if period < 100*time.Millisecond {
		period = 100 * time.Millisecond
	}
	ticker := r.opts.Clock.NewTicker(period)
	defer ticker.Stop()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-r.kick:
				if !r.deliver(ctx) {
					return
				}
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C():
			r.Sweep()
		}
	}
}

func (r *Registry) deliver(ctx context.Context) bool {
	r.pendingMu.Lock()
	keys := make([]types.NamespacedName, 0, len(r.pending))
	for k := range r.pending {
		keys = append(keys, k)
	}
	clear(r.pending)
	r.pendingMu.Unlock()
	for _, k := range keys {
		ev := ChangeEvent{Object: &v1alpha1.ManagedCollector{ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: k.Name}}}
		select {
		case r.changes <- ev:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// groupLocked returns the key's group, creating it: agents may connect before its desired state is known.
func (r *Registry) groupLocked(key types.NamespacedName) *group {
	g := r.groups[key]
	if g == nil {
		g = &group{key: key, members: map[string]*agent{}, remote: map[string]*ownMetrics{}}
		r.groups[key] = g
	}
	return g
}

// changedLocked schedules a signal for g: now if the last one is older than SignalInterval, else when it
// will be. Changes in between ride along with the scheduled signal.
func (r *Registry) changedLocked(g *group) {
	if g.timerSet {
		return
	}
	delay := r.opts.SignalInterval - r.opts.Clock.Since(g.lastSignal)
	if delay <= 0 {
		g.lastSignal = r.opts.Clock.Now()
		r.enqueue(g.key)
		return
	}
	g.timerSet = true
	// A goroutine of its own, as time.AfterFunc gives: a fake clock runs the callback under its lock.
	r.opts.Clock.AfterFunc(delay, func() { go r.fire(g) })
}

func (r *Registry) fire(g *group) {
	key := g.key
	r.mu.Lock()
	if r.groups[key] != g {
		// Forgotten meanwhile: nobody needs a signal for it.
		r.mu.Unlock()
		return
	}
	g.timerSet = false
	g.lastSignal = r.opts.Clock.Now()
	r.mu.Unlock()
	r.enqueue(key)
}

// enqueue hands a group to Start's loop; Signals counts it.
func (r *Registry) enqueue(key types.NamespacedName) {
	r.signals.Add(1)
	r.pendingMu.Lock()
	r.pending[key] = struct{}{}
	r.pendingMu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Signals is the number of change signals raised so far, for tests and metrics.
func (r *Registry) Signals() uint64 { return r.signals.Load() }

// sameGroup says whether m may speak for an agent admitted with was: the same ManagedCollector through the
// same kind of credential. A host may come back with another of its group's EnrollmentTokens: its admission
// checked that the token is redeemed by this very instance.
func sameGroup(was, m credential.Membership) bool {
	return was.Collector == m.Collector && was.Source == m.Source
}

// Observe records one message of an agent and says what to answer. link is the agent's live connection,
// nil for plain HTTP.
func (r *Registry) Observe(uid string, m credential.Membership, rep Report, link Link) Reply {
	now := r.opts.Clock.Now()
	shape := r.parseEffective(uid, rep)
	var stale Link
	defer func() {
		if stale != nil {
			stale.Close()
		}
	}()

	r.mu.Lock()
	defer r.mu.Unlock()

	a := r.agents[uid]
	isNew := a == nil
	g := r.groupLocked(m.Collector)
	switch {
	case !isNew && !sameGroup(a.membership, m):
		// An instance UID is bound to the group that first admitted it for as long as it is remembered: a
		// credential of another group presenting it gets a UID of its own, and the agent stays where it is.
		g.events.add(v1alpha1.EventInstanceUIDTaken, corev1.EventTypeWarning, "", "", &agent{uid: uid})
		r.changedLocked(g)
		return Reply{NewInstanceUID: uuid.Must(uuid.NewV7()).String()}
	case isNew && len(g.members) >= g.maxAgents():
		g.events.add(v1alpha1.EventTooManyCollectors, corev1.EventTypeWarning, "", "", &agent{uid: uid})
		r.changedLocked(g)
		return Reply{Refused: RefusedGroupFull}
	case isNew:
		a = &agent{uid: uid, membership: m, firstSeen: now}
		r.agents[uid] = a
		g.members[uid] = a
	}
	a.membership = m
	changed := isNew

	// A new connection: plain-HTTP agents reconnect after going idle, WebSocket agents with a new link.
	if !a.connected || a.link != link {
		if a.link != nil && a.link != link {
			// The same instance cannot hold two connections; the old one is a leftover of a reconnect.
			stale = a.link
		}
		if !a.connected {
			a.connectedSince = now
		}
		a.connected = true
		a.link = link
		a.sentHash = ""
		a.ownMetricsSent = OwnMetricsNone
		changed = true
	}
	a.lastSeen = now

	// arriving: this replica does not know yet who the agent is. Its arrival Event waits for the message
	// that says it: a supervisor whose connection broke reconnects with the same opamp-go client, whose
	// first message is empty, and sends its full state only when asked (ReportFullState).
	arriving := !a.described
	reply := Reply{}
	if rep.Description != nil {
		changed = changed || !a.described || !sameDescription(a.description, *rep.Description)
		a.description = *rep.Description
		a.described = true
	} else if !a.described || (a.lastSeq != 0 && rep.SequenceNum != a.lastSeq+1) {
		reply.ReportFullState = true
	}
	a.lastSeq = rep.SequenceNum
	if rep.Capabilities != 0 {
		was := a.acceptsRemoteConfig
		a.caps = rep.Capabilities
		a.acceptsRemoteConfig = rep.AcceptsRemoteConfig
		if was && !a.acceptsRemoteConfig && !isNew {
			// It no longer takes remote config (capabilities may change, opamp-spec #217): it runs what it
			// runs now, which the operator no longer heals nor pushes.
			a.drift = driftState{}
			a.sentHash = ""
			g.events.add(v1alpha1.EventReadOnlyMember, corev1.EventTypeNormal, "", "", a)
		}
		changed = changed || was != a.acceptsRemoteConfig
	}
	if arriving && a.described {
		// After the description and capabilities, so the Event names the host or pod and says what it is.
		r.registeredLocked(g, a, rep)
	}
	a.rankLocked(g.desired)
	if rep.EffectiveConfigHash != nil {
		a.effective = *rep.EffectiveConfigHash
	}
	if shape != nil {
		a.drift.shape = shape
		a.drift.checkedHash = ""
	}
	if rep.Health != nil && !a.health.equal(rep.Health) {
		r.healthLocked(a, rep.Health, now, a.applying(now, g.applyTimeout()))
		changed = true
	}
	if c := rep.RemoteConfig; c != nil && (!a.hasConfig || a.config != *c) {
		switch {
		case arriving:
			// What a collector new to this replica runs is no transition seen here: its Reconnected or
			// Registered Event says it arrived, status says what it runs.
		case c.Status == v1alpha1.ConfigStatusApplied && (a.config.Status != c.Status || a.config.Hash != c.Hash):
			g.events.add(v1alpha1.EventConfigApplied, corev1.EventTypeNormal, "", c.Hash, a)
		case c.Status == v1alpha1.ConfigStatusFailed:
			g.events.add(v1alpha1.EventConfigFailed, corev1.EventTypeWarning, c.Message, c.Hash, a)
		}
		a.config = *c
		a.hasConfig = true
		changed = true
	}
	if a.acceptsRemoteConfig && g.checkDriftLocked(a, shape != nil, now) {
		changed = true
	}
	if r.checkUnhealthyLocked(g, a, now) {
		changed = true
	}
	if g.checkFailureLocked(a, now, r.opts.UnhealthyGrace) {
		changed = true
	}
	if changed {
		r.changedLocked(g)
	}
	if reply.ReportFullState {
		return reply
	}
	if t := a.target(g.desired); a.needs(t) {
		reply.Config = a.sendLocked(t, now)
	}
	if a.drift.restart {
		a.drift.restart = false
		reply.Restart = true
	}
	return reply
}

// registeredLocked records the Event of an agent new to this replica: Registered for a collector that never
// ran a config of the operator, Reconnected for one that did (its replica went away, or this one
// restarted), so a failover does not read as a thousand new collectors.
func (r *Registry) registeredLocked(g *group, a *agent, rep Report) {
	switch {
	case rep.RemoteConfig != nil && rep.RemoteConfig.Hash != "" && rep.RemoteConfig.Hash != emptyRevision.Hash:
		g.events.add(v1alpha1.EventReconnected, corev1.EventTypeNormal, "", "", a)
		// Where it ran that config it was offered own metrics too, if its ManagedCollector offers them; the
		// supervisor keeps the offer, and this replica's repeating it on the new connection is no news.
		a.ownMetricsOffered = g.desired != nil && g.desired.OwnMetrics
	case a.described && !a.acceptsRemoteConfig:
		g.events.add(v1alpha1.EventRegistered, corev1.EventTypeNormal, readOnlyDetail, "", a)
	default:
		g.events.add(v1alpha1.EventRegistered, corev1.EventTypeNormal, "", "", a)
	}
}

// readOnlyDetail marks the registration of a read-only member.
const readOnlyDetail = "as a read-only member: it does not accept remote config, so it keeps running its own"

// sendLocked records that t is pushed to the agent now and returns it for the answer.
func (a *agent) sendLocked(t *Revision, now time.Time) *Revision {
	a.sentHash, a.sentAt = t.Hash, now
	out := *t
	return &out
}

// parseEffective parses the structure of the report's effective config when it is new for the agent, before
// the registry's lock is taken: parsing a large config under it would hold up every other agent. It is nil
// when there is nothing new, the config is larger than MaxEffectiveConfig, or it does not parse.
func (r *Registry) parseEffective(uid string, rep Report) *collectorconfig.Shape {
	if rep.EffectiveConfig == nil || len(*rep.EffectiveConfig) > MaxEffectiveConfig {
		return nil
	}
	r.mu.Lock()
	a := r.agents[uid]
	known := a != nil && rep.EffectiveConfigHash != nil && a.effective == *rep.EffectiveConfigHash && a.drift.shape != nil
	r.mu.Unlock()
	if known {
		return nil
	}
	s := parseOnItsOwnStack(*rep.EffectiveConfig)
	if s == nil {
		return nil
	}
	return r.shapes.intern(s)
}

// parseOnItsOwnStack parses a config's shape on a goroutine of its own, which ends with the parse. The YAML
// parser's recursion grows the stack it runs on to tens of KB, and Go keeps a grown stack until a garbage
// collection finds it mostly unused: run on each agent's connection goroutine, 10,000 agents that each
// parsed a config once kept about 14 KB of stack apiece. Nil when the config does not parse.
func parseOnItsOwnStack(config string) *collectorconfig.Shape {
	done := make(chan *collectorconfig.Shape, 1)
	go func() {
		s, err := collectorconfig.ParseShape(config)
		if err != nil {
			s = nil
		}
		done <- s
	}()
	return <-done
}

// healthLocked records a new health report. An agent that turns unhealthy from healthy, or reports an
// error, is news at once, unless a config push explains it (applying); otherwise it is news once it stays
// unhealthy for Options.UnhealthyGrace.
func (r *Registry) healthLocked(a *agent, h *Health, now time.Time, applying bool) {
	wasHealthy := a.healthy()
	hc := *h
	a.health = &hc
	switch {
	case h.Healthy:
		a.unhealthySince, a.unhealthyWarned = time.Time{}, false
		return
	case wasHealthy || a.unhealthySince.IsZero():
		a.unhealthySince, a.unhealthyWarned = now, false
	}
	if !applying && (wasHealthy || h.LastError != "") {
		a.unhealthySince = now.Add(-r.opts.UnhealthyGrace - time.Nanosecond)
	}
}

// checkUnhealthyLocked raises the one Warning of an unhealthy spell when it is news: the agent reported an
// error or turned unhealthy from healthy, or stayed unhealthy for Options.UnhealthyGrace. While a pushed config is
// being applied nothing is news: the supervisor restarts its collector, which reports unhealthy meanwhile,
// and the outcome arrives as ConfigApplied or ConfigFailed.
func (r *Registry) checkUnhealthyLocked(g *group, a *agent, now time.Time) bool {
	if !a.connected || !a.reportsUnhealthy() || a.unhealthyWarned || a.applying(now, g.applyTimeout()) ||
		now.Sub(a.unhealthySince) <= r.opts.UnhealthyGrace {
		return false
	}
	a.unhealthyWarned = true
	g.events.add(v1alpha1.EventUnhealthy, corev1.EventTypeWarning, healthText(a.health), "", a)
	return true
}

// Take returns the config to push to the agent over link, and records it as sent. It is how a WebSocket
// connection answers Notify.
func (r *Registry) Take(uid string, link Link) (Revision, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.agents[uid]
	if a == nil || a.link != link {
		return Revision{}, false
	}
	g := r.groups[a.membership.Collector]
	if g == nil {
		return Revision{}, false
	}
	t := a.target(g.desired)
	if !a.needs(t) {
		return Revision{}, false
	}
	return *a.sendLocked(t, r.opts.Clock.Now()), true
}

// Disconnect records that link, the agent's connection, closed. A newer connection of the same agent is
// left alone.
func (r *Registry) Disconnect(uid string, link Link) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.agents[uid]
	if a == nil || !a.connected || a.link != link {
		return
	}
	r.disconnectLocked(a)
}

func (r *Registry) disconnectLocked(a *agent) {
	now := r.opts.Clock.Now()
	a.connected = false
	a.link = nil
	a.sentHash = ""
	a.ownMetricsSent = OwnMetricsNone
	a.lastSeen = now
	g := r.groups[a.membership.Collector]
	if g == nil {
		return
	}
	if !a.described {
		// It never said who it is: nothing to show, nothing to keep.
		delete(r.agents, a.uid)
		delete(g.members, a.uid)
		r.changedLocked(g)
		return
	}
	if !r.closing.Load() {
		// A replica shutting down closes its connections itself; the collectors reconnect to the others,
		// where they are Reconnected.
		g.events.add(v1alpha1.EventDisconnected, corev1.EventTypeNormal, "", "", a)
	}
	r.changedLocked(g)
}

// Sweep marks agents silent for longer than IdleTimeout disconnected, closing their connections; forgets
// agents disconnected for longer than Retention, and those that never sent a full state after
// UndescribedRetention; raises the Warnings of agents that stayed unhealthy; and moves rollouts' failure
// checks along. Start calls it periodically.
func (r *Registry) Sweep() {
	now := r.opts.Clock.Now()
	var closing []Link
	r.mu.Lock()
	r.expireOwnMetricsLocked(now)
	for uid, a := range r.agents {
		g := r.groups[a.membership.Collector]
		idle := now.Sub(a.lastSeen)
		switch {
		case a.connected && !a.described && now.Sub(a.firstSeen) > UndescribedRetention:
			if a.link != nil {
				closing = append(closing, a.link)
			}
			r.disconnectLocked(a)
		case a.connected && idle > r.opts.IdleTimeout:
			if a.link != nil {
				closing = append(closing, a.link)
			}
			r.disconnectLocked(a)
		case !a.connected && idle > r.opts.Retention:
			delete(r.agents, uid)
			if g != nil {
				delete(g.members, uid)
				r.changedLocked(g)
			}
		}
		if g == nil || r.agents[uid] == nil {
			continue
		}
		changed := r.checkUnhealthyLocked(g, a, now)
		if g.checkFailureLocked(a, now, r.opts.UnhealthyGrace) {
			changed = true
		}
		if changed {
			r.changedLocked(g)
		}
	}
	for key, g := range r.groups {
		// A group is kept while it has a desired state; an empty one without is a leftover of an agent that
		// connected while its ManagedCollector was being deleted.
		if g.desired == nil && len(g.members) == 0 && len(g.remote) == 0 && !g.timerSet && g.events.empty() {
			delete(r.groups, key)
		}
	}
	r.mu.Unlock()
	for _, l := range closing {
		l.Close()
	}
}

// SetDesired implements Fleet. It notifies the connections of agents that do not run their target yet;
// plain-HTTP agents get it in the answer to their next poll.
func (r *Registry) SetDesired(collector types.NamespacedName, desired Desired) {
	var notify []Link
	r.mu.Lock()
	g := r.groupLocked(collector)
	d := desired
	if g.desired != nil && sameDesired(g.desired, &d) {
		// The desired controller runs on every change of its inputs; most change nothing here.
		r.mu.Unlock()
		return
	}
	revisionChanged := g.desired == nil || g.desired.Hash != d.Hash
	g.desired = &d
	for _, a := range g.members {
		a.rankLocked(g.desired)
		if revisionChanged {
			a.failure = nil
		}
		if a.link != nil && a.needs(a.target(g.desired)) {
			notify = append(notify, a.link)
		}
	}
	r.changedLocked(g)
	r.mu.Unlock()
	for _, l := range notify {
		l.Notify()
	}
}

// Full tells whether the ManagedCollector holds as many agents on this replica as it may: a new one would be
// refused.
func (r *Registry) Full(collector types.NamespacedName) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	g := r.groups[collector]
	return g != nil && len(g.members) >= g.maxAgents()
}

// DesiredHash is the hash of the group's accepted config, as this replica knows it; empty without one.
func (r *Registry) DesiredHash(collector types.NamespacedName) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if g := r.groups[collector]; g != nil && g.desired != nil {
		return g.desired.Hash
	}
	return ""
}

func sameDesired(a, b *Desired) bool {
	if a.Hash != b.Hash || a.OwnMetrics != b.OwnMetrics || a.ApplyTimeout != b.ApplyTimeout || a.MaxAgents != b.MaxAgents ||
		selectorString(a.Canary) != selectorString(b.Canary) || (a.Rollout == nil) != (b.Rollout == nil) {
		return false
	}
	if a.Rollout == nil {
		return true
	}
	x, y := a.Rollout, b.Rollout
	return x.Stable.Hash == y.Stable.Hash && x.Phase == y.Phase && x.Threshold == y.Threshold &&
		x.StepStarted.Equal(y.StepStarted) && slices.Equal(x.Superseded, y.Superseded) && x.BakeTime == y.BakeTime
}

func selectorString(s labels.Selector) string {
	if s == nil {
		return ""
	}
	return s.String()
}

// Forget drops a deleted group and its agents and closes their connections.
func (r *Registry) Forget(collector types.NamespacedName) {
	var closing []Link
	r.mu.Lock()
	if g := r.groups[collector]; g != nil {
		for uid, a := range g.members {
			if a.link != nil {
				closing = append(closing, a.link)
			}
			delete(r.agents, uid)
		}
		delete(r.groups, collector)
	}
	r.mu.Unlock()
	for _, l := range closing {
		l.Close()
	}
}

// EvictToken drops the hosts that joined with the EnrollmentToken and closes their connections: the token
// was deleted or revoked.
func (r *Registry) EvictToken(token types.NamespacedName) {
	var closing []Link
	r.mu.Lock()
	for uid, a := range r.agents {
		if a.membership.Source != credential.SourceHost || a.membership.Token != token {
			continue
		}
		if a.link != nil {
			closing = append(closing, a.link)
		}
		delete(r.agents, uid)
		if g := r.groups[a.membership.Collector]; g != nil {
			if a.connected {
				g.events.add(v1alpha1.EventDisconnected, corev1.EventTypeNormal, "", "", a)
			}
			delete(g.members, uid)
			r.changedLocked(g)
		}
	}
	r.mu.Unlock()
	for _, l := range closing {
		l.Close()
	}
}

// CloseAll closes every connection, spread over spread so that the collectors' reconnects do not all land
// on the other replicas at once, and returns when the last is closed or ctx is done. A replica that is
// shutting down calls it after it stopped accepting new connections.
func (r *Registry) CloseAll(ctx context.Context, spread time.Duration) {
	r.closing.Store(true)
	r.mu.Lock()
	links := make([]Link, 0, len(r.agents))
	for _, a := range r.agents {
		if a.link != nil {
			links = append(links, a.link)
		}
	}
	r.mu.Unlock()
	if len(links) == 0 {
		return
	}
	const batches = 20
	per := (len(links) + batches - 1) / batches
	pause := spread / batches
	for i := 0; i < len(links); i += per {
		for _, l := range links[i:min(i+per, len(links))] {
			l.Close()
		}
		if i+per >= len(links) {
			return
		}
		select {
		case <-ctx.Done():
			for _, l := range links[i+per:] {
				l.Close()
			}
			return
		case <-r.opts.Clock.After(pause):
		}
	}
}

// Snapshot implements Fleet.
func (r *Registry) Snapshot(collector types.NamespacedName, countHash string) Snapshot {
	now := r.opts.Clock.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	g := r.groups[collector]
	if g == nil {
		return Snapshot{}
	}
	members := make([]*agent, 0, len(g.members))
	for _, a := range g.members {
		members = append(members, a)
	}
	return Snapshot{
		Counts: count(members, countHash),
		Agents: agentList(members, v1alpha1.MaxAgentsInStatus),
		// Rates sum only the agents that exported within StaleAfter.
		Throughput: r.throughputLocked(g, now).Status(),
		Rollout:    g.rolloutLocked(members),
	}
}

// DrainEvents implements Fleet.
func (r *Registry) DrainEvents(collector types.NamespacedName) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	g := r.groups[collector]
	if g == nil {
		return nil
	}
	return g.events.drain()
}

// Groups is the ManagedCollectors this replica holds agents of or a desired state for.
func (r *Registry) Groups() []types.NamespacedName {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]types.NamespacedName, 0, len(r.groups))
	for k := range r.groups {
		out = append(out, k)
	}
	return out
}

// Connections is the number of agents connected to this replica.
func (r *Registry) Connections() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, a := range r.agents {
		if a.connected {
			n++
		}
	}
	return n
}

func sameDescription(a, b Description) bool {
	if a.HostName != b.HostName || a.PodName != b.PodName || a.NodeName != b.NodeName ||
		a.ServiceVersion != b.ServiceVersion || len(a.NonIdentifying) != len(b.NonIdentifying) {
		return false
	}
	for k, v := range a.NonIdentifying {
		if bv, ok := b.NonIdentifying[k]; !ok || bv != v {
			return false
		}
	}
	return true
}
