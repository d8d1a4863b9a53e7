package managedcollector

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/fleet"
	"github.com/linkmesh/linkmesh-operator/internal/index"
	"github.com/linkmesh/linkmesh-operator/internal/manifests"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
)

// Peers are the other replicas' shares of a ManagedCollector's collectors.
type Peers interface {
	// Shares returns the shares of the live replicas other than this one, and how long until the first of
	// them expires (zero when none will).
	Shares(ctx context.Context, collector types.NamespacedName) ([]v1alpha1.CollectorShare, time.Duration, error)
}

// observed is what the reconcile read, from the cache only, before it decides anything.
type observed struct {
	// configMap is the supervisor ConfigMap, nil before it exists.
	configMap *corev1.ConfigMap
	// accepted is what the ConfigMap persists; ok is false when it holds none.
	accepted   manifests.Accepted
	acceptedOK bool
	// daemonSet is the current DaemonSet, nil in External mode or before it exists.
	daemonSet *appsv1.DaemonSet
	// redeemed is the number of this group's EnrollmentTokens redeemed by a host.
	redeemed int32
	// fleet is this replica's collectors and the live peers', merged.
	fleet fleet.Snapshot
	// shares are the live peers' shares, expiry when the first of them lapses.
	shares []v1alpha1.CollectorShare
	expiry time.Duration
}

// desired is the number of collectors that should be connected: the DaemonSet's scheduled pods and the
// hosts that redeemed a token.
func (o *observed) desired() int32 {
	n := o.redeemed
	if o.daemonSet != nil {
		n += o.daemonSet.Status.DesiredNumberScheduled
	}
	return n
}

// observe reads what the reconcile needs, from the cache and this replica's memory.
func (r *Reconciler) observe(ctx context.Context, mc *v1alpha1.ManagedCollector) (*observed, error) {
	key := client.ObjectKeyFromObject(mc)
	obs := &observed{}

	cm := &corev1.ConfigMap{}
	switch err := r.Get(ctx, types.NamespacedName{Namespace: mc.Namespace, Name: naming.SupervisorConfigMap(mc.Name)}, cm); {
	case apierrors.IsNotFound(err):
	case err != nil:
		return nil, fmt.Errorf("reading the supervisor ConfigMap: %w", err)
	default:
		obs.configMap = cm
		accepted, ok, err := manifests.AcceptedConfig(cm)
		if err != nil {
			return nil, err
		}
		obs.accepted, obs.acceptedOK = accepted, ok
	}

	if modeOf(mc) == v1alpha1.ModeDaemonSet {
		ds := &appsv1.DaemonSet{}
		switch err := r.Get(ctx, types.NamespacedName{Namespace: mc.Namespace, Name: naming.DaemonSet(mc.Name)}, ds); {
		case apierrors.IsNotFound(err):
		case err != nil:
			return nil, fmt.Errorf("reading the DaemonSet: %w", err)
		default:
			obs.daemonSet = ds
		}
	}

	tokens := &v1alpha1.EnrollmentTokenList{}
	if err := r.List(ctx, tokens, client.InNamespace(mc.Namespace), client.MatchingFields{index.TokenCollector: mc.Name}); err != nil {
		return nil, fmt.Errorf("listing the EnrollmentTokens: %w", err)
	}
	for _, t := range tokens.Items {
		if t.Status.Phase == v1alpha1.TokenRedeemed {
			obs.redeemed++
		}
	}

	if r.Peers != nil {
		shares, expiry, err := r.Peers.Shares(ctx, key)
		if err != nil {
			return nil, err
		}
		obs.shares, obs.expiry = shares, expiry
	}
	return obs, nil
}

// snapshot merges this replica's collectors with the peers' against countHash.
func (r *Reconciler) snapshot(key types.NamespacedName, obs *observed, countHash string) fleet.Snapshot {
	var local fleet.Snapshot
	if r.Fleet != nil {
		local = r.Fleet.Snapshot(key, countHash)
	}
	return fleet.Merge(countHash, local, obs.shares)
}
