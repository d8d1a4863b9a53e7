package fleet

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/collectorconfig"
	"github.com/linkmesh/linkmesh-operator/internal/credential"
)

// Defaults of Options.
const (
	// DefaultIdleTimeout is three missed heartbeats of the supervisor's default 30 s interval.
	DefaultIdleTimeout = 90 * time.Second
	// DefaultRetention keeps a disconnected agent in status long enough for a user to see why it left.
	DefaultRetention = 15 * time.Minute
	// DefaultSignalInterval is the budget: one status write per ManagedCollector per second.
	DefaultSignalInterval = time.Second
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
}

// ChangeEvent is what the registry sends on Changes: the ManagedCollector whose agents changed.
type ChangeEvent = event.TypedGenericEvent[*v1alpha1.ManagedCollector]

// Registry is the Fleet: the agents connected to this replica, keyed by instance UID, and the desired
// config of every ManagedCollector. Nothing in it is shared with other replicas, so it assumes nothing
// about them: an agent's state is what it reported here.
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
}

var _ Fleet = (*Registry)(nil)

// group is one ManagedCollector's share of the registry.
type group struct {
	key     types.NamespacedName
	desired *Desired
	// shape is the structure of desired, parsed once per shapeHash for drift checks.
	shape     *collectorconfig.Shape
	shapeHash string
	members   map[string]*agent
	events    eventLog
	// lastSignal and timerSet coalesce change signals to one per SignalInterval.
	lastSignal time.Time
	timerSet   bool
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
	return &Registry{
		opts:    opts,
		agents:  map[string]*agent{},
		groups:  map[types.NamespacedName]*group{},
		pending: map[types.NamespacedName]struct{}{},
		kick:    make(chan struct{}, 1),
		changes: make(chan ChangeEvent, 128),
	}
}

// Changes signals the ManagedCollector reconciler, through source.Channel, that a group's agents changed.
// Each group is signalled at most once per SignalInterval, however many agents it has.
func (r *Registry) Changes() <-chan ChangeEvent { return r.changes }

// NeedLeaderElection is false: every replica serves OpAMP and must report and expire its own agents.
func (r *Registry) NeedLeaderElection() bool { return false }

// Start delivers change signals and expires idle agents until ctx is done. The two run apart: on a replica
// that is not the leader nobody reads Changes, and idle detection must go on there all the same.
func (r *Registry) Start(ctx context.Context) error {
	period := r.opts.IdleTimeout / 4
	if period < time.Second {
		period = time.Second
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

// groupLocked returns the key's group, creating it: agents may connect before the reconciler set a config.
func (r *Registry) groupLocked(key types.NamespacedName) *group {
	g := r.groups[key]
	if g == nil {
		g = &group{key: key, members: map[string]*agent{}}
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
		// Forgotten meanwhile: the reconciler that called Forget needs no signal.
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

// Observe records one message of an agent and says what to answer. link is the agent's live connection,
// nil for plain HTTP.
func (r *Registry) Observe(uid string, m credential.Membership, rep Report, link Link) Reply {
	now := r.opts.Clock.Now()
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
	if isNew {
		a = &agent{uid: uid}
		r.agents[uid] = a
	} else if a.membership.Collector != m.Collector {
		if old := r.groups[a.membership.Collector]; old != nil {
			delete(old.members, uid)
			r.changedLocked(old)
		}
	}
	a.membership = m
	g := r.groupLocked(m.Collector)
	g.members[uid] = a
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

	reply := Reply{}
	if rep.Description != nil {
		changed = changed || !a.described || !sameDescription(a.description, *rep.Description)
		a.description = *rep.Description
		a.described = true
	} else if !a.described || (a.lastSeq != 0 && rep.SequenceNum != a.lastSeq+1) {
		reply.ReportFullState = true
	}
	a.lastSeq = rep.SequenceNum
	if isNew {
		// After the description, so the Event names the host or pod.
		g.events.add(v1alpha1.EventRegistered, corev1.EventTypeNormal, "", "", a)
	}
	if rep.Capabilities != 0 {
		a.caps = rep.Capabilities
		a.acceptsRC = rep.AcceptsRemoteConfig
	}
	if rep.EffectiveConfigHash != nil {
		a.effective = *rep.EffectiveConfigHash
	}
	if h := rep.Health; h != nil && !a.health.equal(h) {
		// While its collector starts, the supervisor reports it unhealthy (StatusStarting, components not yet
		// up) with no error: warn when a healthy agent turns unhealthy, or when a report carries an error.
		turned := a.health != nil && a.health.Healthy
		if !h.Healthy && (turned || h.LastError != "") {
			g.events.add(v1alpha1.EventUnhealthy, corev1.EventTypeWarning, healthText(h), "", a)
		}
		hc := *h
		a.health = &hc
		changed = true
	}
	if c := rep.RemoteConfig; c != nil && (!a.hasConfig || a.config != *c) {
		switch {
		case c.Status == v1alpha1.ConfigStatusApplied && (a.config.Status != c.Status || a.config.Hash != c.Hash):
			g.events.add(v1alpha1.EventConfigApplied, corev1.EventTypeNormal, "", c.Hash, a)
		case c.Status == v1alpha1.ConfigStatusFailed:
			g.events.add(v1alpha1.EventConfigFailed, corev1.EventTypeWarning, c.Message, c.Hash, a)
		}
		a.config = *c
		a.hasConfig = true
		changed = true
	}
	if g.checkDriftLocked(a, rep.EffectiveConfig, now) {
		changed = true
	}
	if changed {
		r.changedLocked(g)
	}
	if reply.ReportFullState {
		return reply
	}
	if a.needs(g.desired) {
		d := *a.target(g.desired)
		a.sentHash = d.Hash
		reply.Config = &d
	}
	if a.drift.restart {
		a.drift.restart = false
		reply.Restart = true
	}
	return reply
}

// Take returns the config to push to the agent over link, and records it as sent. It is how a WebSocket
// connection answers Notify.
func (r *Registry) Take(uid string, link Link) (Desired, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.agents[uid]
	if a == nil || a.link != link {
		return Desired{}, false
	}
	g := r.groups[a.membership.Collector]
	if g == nil || !a.needs(g.desired) {
		return Desired{}, false
	}
	d := *a.target(g.desired)
	a.sentHash = d.Hash
	return d, true
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
	a.connected = false
	a.link = nil
	a.sentHash = ""
	a.ownMetricsSent = OwnMetricsNone
	if g := r.groups[a.membership.Collector]; g != nil {
		g.events.add(v1alpha1.EventDisconnected, corev1.EventTypeNormal, "", "", a)
		r.changedLocked(g)
	}
}

// Sweep marks agents silent for longer than IdleTimeout disconnected, closing their connections, and
// forgets agents disconnected for longer than Retention. Start calls it periodically.
func (r *Registry) Sweep() {
	now := r.opts.Clock.Now()
	var closing []Link
	r.mu.Lock()
	r.expireOwnMetricsLocked(now)
	for uid, a := range r.agents {
		idle := now.Sub(a.lastSeen)
		switch {
		case a.connected && idle > r.opts.IdleTimeout:
			if a.link != nil {
				closing = append(closing, a.link)
			}
			r.disconnectLocked(a)
		case !a.connected && idle > r.opts.Retention:
			delete(r.agents, uid)
			if g := r.groups[a.membership.Collector]; g != nil {
				delete(g.members, uid)
				r.changedLocked(g)
			}
		}
	}
	for key, g := range r.groups {
		// A group is kept while the reconciler has a config for it; an empty one without is a leftover of an
		// agent that connected while its ManagedCollector was being deleted.
		if g.desired == nil && len(g.members) == 0 && !g.timerSet && g.events.empty() {
			delete(r.groups, key)
		}
	}
	r.mu.Unlock()
	for _, l := range closing {
		l.Close()
	}
}

// SetDesired implements Fleet. It notifies the connections of agents that do not run d yet; plain-HTTP
// agents get it in the answer to their next poll.
func (r *Registry) SetDesired(collector types.NamespacedName, desired Desired) {
	var notify []Link
	r.mu.Lock()
	g := r.groupLocked(collector)
	d := desired
	g.desired = &d
	for _, a := range g.members {
		if a.link != nil && a.needs(g.desired) {
			notify = append(notify, a.link)
		}
	}
	r.mu.Unlock()
	for _, l := range notify {
		l.Notify()
	}
}

// Forget implements Fleet: it drops the group and its agents and closes their connections.
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
		if a.connected {
			r.disconnectLocked(a)
		}
		delete(r.agents, uid)
		if g := r.groups[a.membership.Collector]; g != nil {
			delete(g.members, uid)
			r.changedLocked(g)
		}
	}
	r.mu.Unlock()
	for _, l := range closing {
		l.Close()
	}
}

// Snapshot implements Fleet.
func (r *Registry) Snapshot(collector types.NamespacedName, desiredHash string) Snapshot {
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
		Counts: count(members, desiredHash),
		Agents: agentList(members, v1alpha1.MaxAgentsInStatus),
		Events: g.events.drain(),
		// Rates sum only the agents that exported within StaleAfter.
		Throughput: r.throughputLocked(g, r.opts.Clock.Now()).Status(),
	}
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
