// Package managedcollector reconciles ManagedCollectors into a credentials Secret, a supervisor ConfigMap
// and, in DaemonSet mode, a DaemonSet, decides progressive rollouts, and writes what every replica's OpAMP
// server sees of the collectors into status. It runs on the leader only.
package managedcollector

import (
	"context"
	"errors"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/fleet"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
)

// MinStatusInterval is the budget of status writes: at most one per second per ManagedCollector, however
// many collectors and replicas report. A new generation is written at once.
const MinStatusInterval = time.Second

// Reconciler reconciles ManagedCollectors.
type Reconciler struct {
	client.Client
	// APIReader reads past the cache, which holds only the operator's own Secrets; it tells a missing
	// Secret from somebody else's Secret of the same name.
	APIReader client.Reader
	Recorder  events.EventRecorder
	// OpAMPEndpoint is the ws:// or wss:// URL of /v1/opamp that pods connect to.
	OpAMPEndpoint string
	// DefaultSupervisorImage is used when spec.images.supervisor is empty.
	DefaultSupervisorImage string
	// Fleet is this replica's view of its collectors; nil runs without one (no agents ever connect).
	Fleet fleet.Fleet
	// Peers are the other replicas' shares; nil when this is the only replica.
	Peers Peers
	// Triggers, when set, triggers a reconcile when a group's collectors changed here or on a peer.
	Triggers <-chan event.TypedGenericEvent[*v1alpha1.ManagedCollector]
	// Clock is injected by tests; nil is the real clock.
	Clock clock.PassiveClock

	applied applied
	writes  lastWrites
}

// +kubebuilder:rbac:groups=collectors.linkmesh.io,resources=managedcollectors,verbs=get;list;watch
// +kubebuilder:rbac:groups=collectors.linkmesh.io,resources=managedcollectors/status,verbs=get;patch;update
// +kubebuilder:rbac:groups=collectors.linkmesh.io,resources=enrollmenttokens,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets;configmaps,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=apps,resources=daemonsets,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile runs the phases in order: observe (reads), plan (pure), apply owned objects, compute status
// (pure), record Events, write status once, at most once a second.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	mc := &v1alpha1.ManagedCollector{}
	if err := r.Get(ctx, req.NamespacedName, mc); err != nil {
		if apierrors.IsNotFound(err) {
			r.applied.forget(req.NamespacedName)
			r.writes.forget(req.NamespacedName)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if !mc.DeletionTimestamp.IsZero() {
		// Owned objects go with the garbage collector, agents with the informer's deletion handler.
		return ctrl.Result{}, nil
	}
	base := mc.DeepCopy()
	now := r.clock().Now()

	obs, err := r.observe(ctx, mc)
	if err != nil {
		return ctrl.Result{}, err
	}
	pl := planConfig(mc, obs)
	obs.fleet = r.snapshot(req.NamespacedName, obs, pl.acceptedHash)
	pl.planRollout(mc, obs, now)

	applyErr := r.applyAll(ctx, mc, obs, pl)
	if applyErr != nil && ctx.Err() != nil {
		// Cut short by the manager stopping: not a failure of this object, and the next start reconciles
		// it anyway.
		return ctrl.Result{}, nil //nolint:nilerr // a shutdown is not a failure to report
	}
	computeStatus(mc, obs, pl, applyErr)
	r.record(mc, base, pl, applyErr)

	wait, err := r.writeStatus(ctx, base, mc, now)
	if err != nil && ctx.Err() == nil {
		retErr = errors.Join(retErr, err)
	}
	if applyErr != nil {
		return ctrl.Result{}, errors.Join(applyErr, retErr)
	}
	if retErr != nil {
		return ctrl.Result{}, retErr
	}
	return ctrl.Result{RequeueAfter: soonest(wait, pl.requeue, obs.expiry)}, nil
}

func (r *Reconciler) clock() clock.PassiveClock {
	if r.Clock == nil {
		return clock.RealClock{}
	}
	return r.Clock
}

// record emits the Events of the plan and a Warning for an apply failure that is new.
func (r *Reconciler) record(mc, base *v1alpha1.ManagedCollector, pl *plan, applyErr error) {
	for _, e := range pl.events {
		r.Recorder.Eventf(mc, nil, e.Type, e.Reason, "Reconcile", "%s", e.Message)
	}
	if applyErr == nil {
		return
	}
	prev := readyOf(base)
	if prev == nil || prev.Reason != v1alpha1.ReasonApplyFailed || prev.Message != readyOf(mc).Message {
		r.Recorder.Eventf(mc, nil, corev1.EventTypeWarning, v1alpha1.EventApplyFailed, "Apply", "%s", applyErr.Error())
	}
}

// writeStatus writes the status if it changed: at once for a new generation, else at most once per
// MinStatusInterval; it returns how long to wait before the held-back write.
func (r *Reconciler) writeStatus(ctx context.Context, base, mc *v1alpha1.ManagedCollector, now time.Time) (time.Duration, error) {
	if equality.Semantic.DeepEqual(base.Status, mc.Status) {
		return 0, nil
	}
	key := client.ObjectKeyFromObject(mc)
	if base.Status.ObservedGeneration == mc.Generation {
		if wait := r.writes.wait(key, now); wait > 0 {
			return wait, nil
		}
	}
	if err := r.Status().Patch(ctx, mc, client.MergeFrom(base), client.FieldOwner(naming.FieldOwner)); err != nil {
		return 0, err
	}
	r.writes.wrote(key, now)
	return 0, nil
}

// lastWrites is when each ManagedCollector's status was last written.
type lastWrites struct {
	mu sync.Mutex
	at map[types.NamespacedName]time.Time
}

func (w *lastWrites) wait(key types.NamespacedName, now time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	last, ok := w.at[key]
	if !ok {
		return 0
	}
	return MinStatusInterval - now.Sub(last)
}

func (w *lastWrites) wrote(key types.NamespacedName, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.at == nil {
		w.at = map[types.NamespacedName]time.Time{}
	}
	w.at[key] = now
}

func (w *lastWrites) forget(key types.NamespacedName) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.at, key)
}

// soonest is the smallest positive duration; zero when there is none.
func soonest(ds ...time.Duration) time.Duration {
	var out time.Duration
	for _, d := range ds {
		if d > 0 && (out == 0 || d < out) {
			out = d
		}
	}
	return out
}

// SetupWithManager registers the reconciler and its watches. index.Setup must have run on mgr.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	b := ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.ManagedCollector{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&corev1.Secret{}).
		Owns(&corev1.ConfigMap{}).
		// The DaemonSet's status says how many pods are scheduled.
		Owns(&appsv1.DaemonSet{}).
		Owns(&v1alpha1.CollectorShare{}).
		// A token's phase changes the number of desired hosts.
		Watches(&v1alpha1.EnrollmentToken{}, handler.EnqueueRequestsFromMapFunc(
			func(_ context.Context, o client.Object) []reconcile.Request {
				et := o.(*v1alpha1.EnrollmentToken)
				return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: et.Namespace, Name: et.Spec.CollectorRef.Name}}}
			}))
	if r.Triggers != nil {
		b = b.WatchesRawSource(source.Channel(r.Triggers, &handler.TypedEnqueueRequestForObject[*v1alpha1.ManagedCollector]{}))
	}
	return b.Named("managedcollector").Complete(r)
}
