// Package replica is what one operator replica tells the others, through the API server only: the Events
// of the collectors connected to it, and, while it is not the leader, its share of each ManagedCollector's
// collectors (a CollectorShare) and its liveness (a Lease). The leader merges the live replicas' shares
// with its own collectors into status; a share whose replica's Lease has expired is dropped.
//
// Why a CollectorShare per replica and ManagedCollector, not per-replica entries in the ManagedCollector's
// status: the shares are written at most once a second each, by their replica alone, and watched by the
// leader alone; entries in the ManagedCollector would make every write of every replica a change of the
// object every replica watches, and bloat what kubectl shows.
package replica

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/google/uuid"
	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/fleet"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
	"github.com/linkmesh/linkmesh-operator/internal/ssa"
)

// Defaults of Options.
const (
	// DefaultLeaseDuration is how long a replica's Lease keeps its share alive without a renewal: a killed
	// replica's collectors drop out of status within it and the leader's next reconcile.
	DefaultLeaseDuration = 10 * time.Second
	// DefaultRenewPeriod is how often a replica renews its Lease.
	DefaultRenewPeriod = 3 * time.Second
	// gcPeriod is how often the leader looks for shares of replicas that are gone.
	gcPeriod = 5 * time.Second
	// lapsePeriod is how often the leader looks for Leases that lapsed: how late, at most, a killed
	// replica's collectors leave status after its Lease expired.
	lapsePeriod = time.Second
)

// +kubebuilder:rbac:groups=collectors.linkmesh.io,resources=collectorshares,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=collectors.linkmesh.io,resources=managedcollectors,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Options configure a Replica.
type Options struct {
	// ID names the replica; NewID makes one.
	ID string
	// Namespace holds the replicas' Leases: the operator's own.
	Namespace string
	// Client writes shares, Leases and the collectors' Events; Cache reads shares, Leases and
	// ManagedCollectors.
	Client client.Client
	Cache  client.Reader
	// Fleet is this replica's fleet.
	Fleet *fleet.Registry
	// Elected is closed when this replica becomes the leader (the manager's Elected).
	Elected <-chan struct{}
	// Drained, when set, is closed once the listener has closed this replica's connections on shutdown;
	// the share and the Lease are removed after it, so the leader does not count the collectors twice.
	Drained <-chan struct{}
	// LeaseDuration and RenewPeriod tune the Lease; zero takes the defaults.
	LeaseDuration, RenewPeriod time.Duration
	// Clock is injected by tests.
	Clock clock.WithTicker
}

// Replica runs on every replica, leader or not.
type Replica struct {
	opts     Options
	hash     string
	triggers chan event.TypedGenericEvent[*v1alpha1.ManagedCollector]
	events   chan eventWrite

	mu        sync.Mutex
	leader    bool
	published map[types.NamespacedName]*v1alpha1.CollectorShare

	// live are the other replicas whose Leases the leader saw live at its last check (checkLapses);
	// only its loop touches it.
	live map[string]bool
}

// NewID is a replica's identity: the host (the pod's name in a cluster) and a random suffix, so a restarted
// process is a new replica whose predecessor's share expires with its Lease.
func NewID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "operator"
	}
	return host + "_" + uuid.NewString()[:8]
}

// New returns a Replica; run it with the manager (it is a Runnable that needs no leader).
func New(o Options) *Replica {
	if o.LeaseDuration <= 0 {
		o.LeaseDuration = DefaultLeaseDuration
	}
	if o.RenewPeriod <= 0 {
		o.RenewPeriod = DefaultRenewPeriod
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	sum := sha256.Sum256([]byte(o.ID))
	return &Replica{
		opts:      o,
		hash:      hex.EncodeToString(sum[:5]),
		triggers:  make(chan event.TypedGenericEvent[*v1alpha1.ManagedCollector], 1024),
		events:    make(chan eventWrite, eventQueue),
		published: map[types.NamespacedName]*v1alpha1.CollectorShare{},
	}
}

// ID is the replica's identity.
func (r *Replica) ID() string { return r.opts.ID }

// Triggers tells the leader's ManagedCollector reconciler that a group's collectors here changed.
func (r *Replica) Triggers() <-chan event.TypedGenericEvent[*v1alpha1.ManagedCollector] {
	return r.triggers
}

// NeedLeaderElection is false: every replica reports its collectors.
func (r *Replica) NeedLeaderElection() bool { return false }

// IsLeader says whether this replica is the leader.
func (r *Replica) IsLeader() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.leader
}

// Start reports until ctx is done, then removes this replica's shares and Lease.
func (r *Replica) Start(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx).WithName("replica").WithValues("replica", r.opts.ID)
	go r.writeEvents(ctx, log)
	renew := r.opts.Clock.NewTicker(r.opts.RenewPeriod)
	defer renew.Stop()
	gc := r.opts.Clock.NewTicker(gcPeriod)
	defer gc.Stop()
	lapses := r.opts.Clock.NewTicker(lapsePeriod)
	defer lapses.Stop()
	elected := r.opts.Elected
	// Without leader election the manager elects this replica right after starting it: it then needs no
	// Lease at all.
	select {
	case <-elected:
		elected = nil
		r.becomeLeader(ctx, log)
	case <-r.opts.Clock.After(time.Second):
		r.renew(ctx, log)
	case <-ctx.Done():
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			r.stop(log)
			return nil
		case <-elected:
			elected = nil
			r.becomeLeader(ctx, log)
		case <-renew.C():
			if !r.IsLeader() {
				r.renew(ctx, log)
			}
		case <-gc.C():
			if r.IsLeader() {
				r.collectGarbage(ctx, log)
			}
		case <-lapses.C():
			if r.IsLeader() {
				r.checkLapses(ctx, log)
			}
		case ev := <-r.opts.Fleet.Changes():
			key := types.NamespacedName{Namespace: ev.Object.Namespace, Name: ev.Object.Name}
			r.report(ctx, log, key)
		}
	}
}

// report records the group's pending Events and hands its change on: to the leader's reconciler, or as
// this replica's share.
func (r *Replica) report(ctx context.Context, log logger, key types.NamespacedName) {
	mc := &v1alpha1.ManagedCollector{}
	if err := r.opts.Cache.Get(ctx, key, mc); err != nil {
		if !apierrors.IsNotFound(err) {
			log.Error(err, "Reading a ManagedCollector", "managedCollector", key.String())
		}
		// Deleted: its Events have nothing to attach to, its share goes with it.
		r.opts.Fleet.DrainEvents(key)
		return
	}
	for _, e := range r.opts.Fleet.DrainEvents(key) {
		r.queueEvent(log, mc, e)
	}
	if r.IsLeader() {
		select {
		case r.triggers <- event.TypedGenericEvent[*v1alpha1.ManagedCollector]{Object: mc}:
		case <-ctx.Done():
		}
		return
	}
	if err := r.publish(ctx, mc); err != nil && ctx.Err() == nil {
		log.Error(err, "Publishing this replica's share", "managedCollector", key.String())
	}
}

// logger is the part of logr the replica uses.
type logger interface {
	Info(msg string, keysAndValues ...any)
	Error(err error, msg string, keysAndValues ...any)
}

// shareName names this replica's share of a ManagedCollector.
func (r *Replica) shareName(collector string) string { return collector + "." + r.hash }

// publish writes this replica's share of mc if it changed, or deletes it when this replica holds none of
// mc's collectors.
func (r *Replica) publish(ctx context.Context, mc *v1alpha1.ManagedCollector) error {
	key := client.ObjectKeyFromObject(mc)
	countHash := r.opts.Fleet.DesiredHash(key)
	snap := r.opts.Fleet.Snapshot(key, countHash)
	share := &v1alpha1.CollectorShare{
		TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "CollectorShare"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace:       mc.Namespace,
			Name:            r.shareName(mc.Name),
			Labels:          ShareLabels(mc.Name, r.hash),
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(mc, v1alpha1.GroupVersion.WithKind("ManagedCollector"))},
		},
		Collector:   mc.Name,
		Replica:     r.opts.ID,
		CountedHash: countHash,
		Counts:      snap.Counts,
		Agents:      snap.Agents,
		Throughput:  snap.Throughput,
		Rollout:     snap.Rollout,
	}
	r.mu.Lock()
	last := r.published[key]
	r.mu.Unlock()
	empty := snap.Counts == (v1alpha1.AgentCounts{}) && len(snap.Agents) == 0 && snap.Throughput == nil
	switch {
	case empty && last == nil:
		return nil
	case empty:
		if err := r.opts.Client.Delete(ctx, last); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting share %s: %w", last.Name, err)
		}
		r.mu.Lock()
		delete(r.published, key)
		r.mu.Unlock()
		return nil
	case last != nil && sameShare(last, share):
		return nil
	}
	if err := ssa.Apply(ctx, r.opts.Client, share); err != nil {
		return err
	}
	r.mu.Lock()
	r.published[key] = share
	r.mu.Unlock()
	return nil
}

func sameShare(a, b *v1alpha1.CollectorShare) bool {
	return a.CountedHash == b.CountedHash && equality.Semantic.DeepEqual(a.Counts, b.Counts) &&
		equality.Semantic.DeepEqual(a.Agents, b.Agents) && equality.Semantic.DeepEqual(a.Throughput, b.Throughput) &&
		equality.Semantic.DeepEqual(a.Rollout, b.Rollout)
}

// ShareLabels label a replica's share of a ManagedCollector, so the leader lists a group's shares and a
// replica its own.
func ShareLabels(collector, replicaHash string) map[string]string {
	return map[string]string{
		naming.LabelManagedBy: naming.FieldOwner,
		naming.LabelCollector: collector,
		LabelReplica:          replicaHash,
	}
}

// Labels of shares and Leases.
const (
	// LabelReplica is the hash of the replica's ID, on its shares and its Lease.
	LabelReplica = v1alpha1.GroupName + "/replica"
	// LabelComponentReplica is the component label of replicas' Leases.
	LabelComponentReplica = "replica"
)

// leaseName is the replica's Lease.
func (r *Replica) leaseName() string { return "linkmesh-replica-" + r.hash }

// renew creates or renews this replica's Lease. When it had lapsed (this replica was paused, cut off from
// the API server or starved for longer than the Lease), the leader has dropped this replica's collectors
// from status and may have deleted its shares: they are published again, whole.
func (r *Replica) renew(ctx context.Context, log logger) {
	now := metav1.NewMicroTime(r.opts.Clock.Now())
	lease := &coordinationv1.Lease{}
	key := types.NamespacedName{Namespace: r.opts.Namespace, Name: r.leaseName()}
	err := r.opts.Client.Get(ctx, key, lease)
	lapsed := false
	switch {
	case apierrors.IsNotFound(err):
		// Gone: never created, or deleted by the leader long after it lapsed.
		lapsed = r.hasPublished()
		lease = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name, Labels: LeaseLabels(r.hash)},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity:       ptr.To(r.opts.ID),
				LeaseDurationSeconds: ptr.To(int32(r.opts.LeaseDuration / time.Second)),
				AcquireTime:          &now,
				RenewTime:            &now,
			},
		}
		err = r.opts.Client.Create(ctx, lease)
	case err == nil:
		lapsed = expiresIn(lease, now.Time) <= 0
		lease.Spec.RenewTime = &now
		err = r.opts.Client.Update(ctx, lease)
	}
	if err != nil {
		if ctx.Err() == nil {
			log.Error(err, "Renewing this replica's Lease")
		}
		return
	}
	if lapsed {
		log.Info("This replica's Lease had lapsed: publishing its shares again")
		r.mu.Lock()
		clear(r.published)
		r.mu.Unlock()
		r.reportAll(ctx, log)
	}
}

// hasPublished says whether this replica believes it has shares in the API.
func (r *Replica) hasPublished() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.published) > 0
}

// LeaseLabels label a replica's Lease.
func LeaseLabels(replicaHash string) map[string]string {
	return map[string]string{
		naming.LabelManagedBy: naming.FieldOwner,
		naming.LabelComponent: LabelComponentReplica,
		LabelReplica:          replicaHash,
	}
}

// becomeLeader drops this replica's shares and Lease: from now on its collectors are merged from memory.
func (r *Replica) becomeLeader(ctx context.Context, log logger) {
	r.mu.Lock()
	r.leader = true
	r.mu.Unlock()
	log.Info("Elected: merging the replicas' shares into status")
	r.removeOwn(ctx, log)
	// Whatever changed while another replica led must reach status now.
	for _, key := range r.opts.Fleet.Groups() {
		select {
		case r.triggers <- event.TypedGenericEvent[*v1alpha1.ManagedCollector]{Object: &v1alpha1.ManagedCollector{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}}:
		case <-ctx.Done():
			return
		}
	}
}

// maxDrainWait bounds how long stop waits for the listener's drain.
const maxDrainWait = 30 * time.Second

// stop follows the listener's drain, then removes this replica's shares and Lease once its connections
// are closed, so the leader drops its collectors at once rather than after the Lease expires.
//
// While the drain closes the connections, the collectors reconnect to the other replicas: a share frozen
// at its fullest would count each of them twice, here and there, until the end of the drain. The fleet no
// longer signals changes (it stopped with the manager), so once a second this replica publishes what it
// still holds, or, as the leader, has its reconciler count it. The Events of the drain (the collectors'
// Disconnected) are not recorded: each collector's Reconnected on the replica it moves to says it.
func (r *Replica) stop(log logger) {
	ctx, cancel := context.WithTimeout(context.Background(), maxDrainWait+5*time.Second)
	defer cancel()
	if r.opts.Drained != nil {
		tick := r.opts.Clock.NewTicker(time.Second)
		defer tick.Stop()
		deadline := r.opts.Clock.After(maxDrainWait)
	drain:
		for {
			select {
			case <-r.opts.Drained:
				break drain
			case <-deadline:
				break drain
			case <-tick.C():
				r.reportAll(ctx, log)
			}
		}
	}
	removeCtx, removeCancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer removeCancel()
	r.removeOwn(removeCtx, log)
}

// reportAll reports every group's collectors as they are now, without their Events (the next change of a
// group records them): while the replica drains, and after its Lease lapsed.
func (r *Replica) reportAll(ctx context.Context, log logger) {
	leader := r.IsLeader()
	for _, key := range r.opts.Fleet.Groups() {
		mc := &v1alpha1.ManagedCollector{}
		if err := r.opts.Cache.Get(ctx, key, mc); err != nil {
			continue
		}
		if leader {
			// The reconciler may have stopped already: never wait for it.
			select {
			case r.triggers <- event.TypedGenericEvent[*v1alpha1.ManagedCollector]{Object: mc}:
			default:
			}
			continue
		}
		if err := r.publish(ctx, mc); err != nil {
			log.Error(err, "Publishing this replica's share", "managedCollector", key.String())
		}
	}
}

func (r *Replica) removeOwn(ctx context.Context, log logger) {
	shares := &v1alpha1.CollectorShareList{}
	if err := r.opts.Client.List(ctx, shares, client.MatchingLabels{LabelReplica: r.hash}); err != nil {
		log.Error(err, "Listing this replica's shares")
	}
	for i := range shares.Items {
		if err := r.opts.Client.Delete(ctx, &shares.Items[i]); err != nil && !apierrors.IsNotFound(err) {
			log.Error(err, "Deleting this replica's share", "share", shares.Items[i].Name)
		}
	}
	r.mu.Lock()
	clear(r.published)
	r.mu.Unlock()
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: r.opts.Namespace, Name: r.leaseName()}}
	if err := r.opts.Client.Delete(ctx, lease); err != nil && !apierrors.IsNotFound(err) {
		log.Error(err, "Deleting this replica's Lease")
	}
}
