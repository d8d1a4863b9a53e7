package replica

import (
	"context"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
)

// The replicas' Leases live in the operator's namespace; the chart's and config/rbac's leader-election
// Role grants them, not the ClusterRole.

// leases are the replicas' Leases by replica hash, as the cache has them.
func (r *Replica) leases(ctx context.Context) (map[string]*coordinationv1.Lease, error) {
	list := &coordinationv1.LeaseList{}
	if err := r.opts.Cache.List(ctx, list, client.InNamespace(r.opts.Namespace),
		client.MatchingLabels{naming.LabelComponent: LabelComponentReplica}); err != nil {
		return nil, fmt.Errorf("listing the replicas' Leases: %w", err)
	}
	out := make(map[string]*coordinationv1.Lease, len(list.Items))
	for i := range list.Items {
		l := &list.Items[i]
		out[l.Labels[LabelReplica]] = l
	}
	return out, nil
}

// expiresIn is how long a Lease has left at now; not positive once it expired.
func expiresIn(l *coordinationv1.Lease, now time.Time) time.Duration {
	if l == nil || l.Spec.RenewTime == nil || l.Spec.LeaseDurationSeconds == nil {
		return 0
	}
	return l.Spec.RenewTime.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second).Sub(now)
}

// Shares returns the shares of collector held by live replicas other than this one. The duration is
// always zero: the leader's reconciler need not come back when a Lease could expire, as the replica
// triggers it when one does (checkLapses). A requeue at every Lease's expiry time would recompute status
// every few seconds, and write it for the heartbeats' lastSeen alone.
func (r *Replica) Shares(ctx context.Context, collector types.NamespacedName) ([]v1alpha1.CollectorShare, time.Duration, error) {
	list := &v1alpha1.CollectorShareList{}
	if err := r.opts.Cache.List(ctx, list, client.InNamespace(collector.Namespace),
		client.MatchingLabels{naming.LabelCollector: collector.Name}); err != nil {
		return nil, 0, fmt.Errorf("listing the shares of %s: %w", collector, err)
	}
	if len(list.Items) == 0 {
		return nil, 0, nil
	}
	leases, err := r.leases(ctx)
	if err != nil {
		return nil, 0, err
	}
	now := r.opts.Clock.Now()
	var live []v1alpha1.CollectorShare
	for _, s := range list.Items {
		h := s.Labels[LabelReplica]
		if h == r.hash || expiresIn(leases[h], now) <= 0 {
			continue
		}
		live = append(live, s)
	}
	return live, 0, nil
}

// checkLapses, on the leader, triggers the reconcile of every ManagedCollector with a share of a replica
// whose Lease lapsed since the last check: its collectors leave status now, not at the next change.
func (r *Replica) checkLapses(ctx context.Context, log logger) {
	leases, err := r.leases(ctx)
	if err != nil {
		log.Error(err, "Checking the replicas' Leases")
		return
	}
	now := r.opts.Clock.Now()
	live := map[string]bool{}
	for h, l := range leases {
		if h != r.hash && expiresIn(l, now) > 0 {
			live[h] = true
		}
	}
	for h := range r.live {
		if live[h] {
			continue
		}
		shares := &v1alpha1.CollectorShareList{}
		if err := r.opts.Cache.List(ctx, shares, client.MatchingLabels{LabelReplica: h}); err != nil {
			log.Error(err, "Listing the shares of a replica whose Lease lapsed")
			continue
		}
		for _, s := range shares.Items {
			mc := &v1alpha1.ManagedCollector{ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Collector}}
			select {
			case r.triggers <- event.TypedGenericEvent[*v1alpha1.ManagedCollector]{Object: mc}:
			case <-ctx.Done():
				return
			}
		}
	}
	r.live = live
}

// Others says whether other replicas are alive: then own metrics of collectors connected to them may
// arrive here.
func (r *Replica) Others(ctx context.Context) bool {
	if !r.IsLeader() {
		// A leader exists somewhere, and it holds collectors too.
		return true
	}
	leases, err := r.leases(ctx)
	if err != nil {
		return false
	}
	now := r.opts.Clock.Now()
	for h, l := range leases {
		if h != r.hash && expiresIn(l, now) > 0 {
			return true
		}
	}
	return false
}

// collectGarbage deletes the shares of replicas whose Lease expired or is gone, and Leases long expired:
// replicas killed without a chance to remove their own.
func (r *Replica) collectGarbage(ctx context.Context, log logger) {
	leases, err := r.leases(ctx)
	if err != nil {
		log.Error(err, "Collecting the shares of stopped replicas")
		return
	}
	now := r.opts.Clock.Now()
	shares := &v1alpha1.CollectorShareList{}
	if err := r.opts.Cache.List(ctx, shares); err != nil {
		log.Error(err, "Collecting the shares of stopped replicas")
		return
	}
	for i := range shares.Items {
		s := &shares.Items[i]
		if expiresIn(leases[s.Labels[LabelReplica]], now) > 0 {
			continue
		}
		if err := r.opts.Client.Delete(ctx, s); err != nil && !apierrors.IsNotFound(err) {
			log.Error(err, "Deleting the share of a stopped replica", "share", s.Name)
		}
	}
	for h, l := range leases {
		if h != r.hash && expiresIn(l, now) < -time.Minute {
			if err := r.opts.Client.Delete(ctx, l); err != nil && !apierrors.IsNotFound(err) {
				log.Error(err, "Deleting the Lease of a stopped replica", "lease", l.Name)
			}
		}
	}
}
