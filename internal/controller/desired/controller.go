// Package desired tells this replica's fleet what each ManagedCollector's collectors should run, from what
// the API says: the accepted config and rollout state in the supervisor ConfigMap (manifests.Accepted) and
// the ManagedCollector's spec. It runs on every replica, leader or not, so each pushes the accepted config
// to the collectors connected to it; the leader writes the ConfigMap before anything is pushed.
package desired

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/collectorconfig"
	"github.com/linkmesh/linkmesh-operator/internal/fleet"
	"github.com/linkmesh/linkmesh-operator/internal/index"
	"github.com/linkmesh/linkmesh-operator/internal/manifests"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
	"github.com/linkmesh/linkmesh-operator/internal/rollout"
)

// Reconciler sets each ManagedCollector's fleet.Desired from the cache. It writes nothing to the API.
type Reconciler struct {
	// Reader is the manager's cache.
	Reader client.Reader
	// Fleet is this replica's fleet.
	Fleet interface {
		SetDesired(types.NamespacedName, fleet.Desired)
	}
}

// Reconcile reads the ManagedCollector and its supervisor ConfigMap and sets the desired state. A
// deleted ManagedCollector is the informer handler's to forget.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	mc := &v1alpha1.ManagedCollector{}
	if err := r.Reader.Get(ctx, req.NamespacedName, mc); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !mc.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	cm := &corev1.ConfigMap{}
	err := r.Reader.Get(ctx, types.NamespacedName{Namespace: mc.Namespace, Name: naming.SupervisorConfigMap(mc.Name)}, cm)
	if apierrors.IsNotFound(err) {
		// No config was ever accepted: collectors wait.
		return ctrl.Result{}, nil
	}
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("reading the supervisor ConfigMap: %w", err)
	}
	expected, err := r.expected(ctx, mc)
	if err != nil {
		return ctrl.Result{}, err
	}
	d, ok, err := Desired(mc, cm, expected)
	if err != nil || !ok {
		return ctrl.Result{}, err
	}
	r.Fleet.SetDesired(req.NamespacedName, d)
	return ctrl.Result{}, nil
}

// expected is how many collectors may connect, for the cap: the DaemonSet's scheduled pods and the hosts
// whose tokens are pending or redeemed, as the cache has them now (status.counts lags a reconcile behind,
// and a thousand hosts enrolling at once must not wait for it).
func (r *Reconciler) expected(ctx context.Context, mc *v1alpha1.ManagedCollector) (int, error) {
	n := 0
	if manifests.Mode(mc) == v1alpha1.ModeDaemonSet {
		ds := &appsv1.DaemonSet{}
		switch err := r.Reader.Get(ctx, types.NamespacedName{Namespace: mc.Namespace, Name: naming.DaemonSet(mc.Name)}, ds); {
		case err == nil:
			n += int(ds.Status.DesiredNumberScheduled)
		case !apierrors.IsNotFound(err):
			return 0, fmt.Errorf("reading the DaemonSet: %w", err)
		}
	}
	tokens := &v1alpha1.EnrollmentTokenList{}
	if err := r.Reader.List(ctx, tokens, client.InNamespace(mc.Namespace), client.MatchingFields{index.TokenCollector: mc.Name}); err != nil {
		return 0, fmt.Errorf("listing the EnrollmentTokens: %w", err)
	}
	for _, t := range tokens.Items {
		if p := t.Status.Phase; p == v1alpha1.TokenPending || p == v1alpha1.TokenRedeemed || p == "" {
			n++
		}
	}
	return n, nil
}

// Desired is what the ManagedCollector's collectors should run, by the API: false when the ConfigMap holds
// no accepted config.
func Desired(mc *v1alpha1.ManagedCollector, cm *corev1.ConfigMap, expected int) (fleet.Desired, bool, error) {
	accepted, ok, err := manifests.AcceptedConfig(cm)
	if err != nil || !ok {
		return fleet.Desired{}, false, err
	}
	d := fleet.Desired{
		Revision:     fleet.Revision{Config: accepted.Config, Hash: collectorconfig.Hash(accepted.Config)},
		OwnMetrics:   manifests.OwnMetricsEnabled(mc),
		ApplyTimeout: manifests.ConfigApplyTimeout(mc),
		MaxAgents:    manifests.MaxCollectors(mc, expected),
	}
	if spec := mc.Spec.Rollout; spec != nil && spec.CanarySelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(spec.CanarySelector)
		if err != nil {
			return fleet.Desired{}, false, fmt.Errorf("spec.rollout.canarySelector: %w", err)
		}
		d.Canary = sel
	}
	if ro := accepted.Rollout; ro != nil {
		d.Rollout = &fleet.Rollout{
			Stable:      fleet.Revision{Config: ro.Stable, Hash: collectorconfig.Hash(ro.Stable)},
			Phase:       ro.Phase,
			Threshold:   ro.Threshold,
			StepStarted: ro.StepStarted,
			Superseded:  ro.Superseded,
			BakeTime:    rollout.BakeTime(mc.Spec.Rollout),
		}
	}
	return d, true, nil
}

// SetupWithManager runs the reconciler on every replica: it needs no leader. It reconciles on a new
// generation, a ConfigMap change, and what moves the collector cap: the DaemonSet's scheduled pods and the
// group's EnrollmentTokens.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.ManagedCollector{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&corev1.ConfigMap{}).
		Owns(&appsv1.DaemonSet{}, builder.WithPredicates(scheduledChanged{})).
		Watches(&v1alpha1.EnrollmentToken{}, handler.EnqueueRequestsFromMapFunc(
			func(_ context.Context, o client.Object) []reconcile.Request {
				et := o.(*v1alpha1.EnrollmentToken)
				return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: et.Namespace, Name: et.Spec.CollectorRef.Name}}}
			})).
		WithOptions(controller.Options{NeedLeaderElection: ptr.To(false)}).
		Named("fleet-desired").
		Complete(r)
}

// scheduledChanged passes DaemonSet creations, deletions and changes of desiredNumberScheduled.
type scheduledChanged struct {
	predicate.Funcs
}

func (scheduledChanged) Update(e event.UpdateEvent) bool {
	o, ok1 := e.ObjectOld.(*appsv1.DaemonSet)
	n, ok2 := e.ObjectNew.(*appsv1.DaemonSet)
	return ok1 && ok2 && o.Status.DesiredNumberScheduled != n.Status.DesiredNumberScheduled
}
