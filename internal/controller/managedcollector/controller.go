// Package managedcollector reconciles ManagedCollectors into a credentials Secret, a supervisor ConfigMap
// and, in DaemonSet mode, a DaemonSet, and writes what the OpAMP server sees of its collectors into status.
package managedcollector

import (
	"context"
	"errors"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/collectorconfig"
	"github.com/linkmesh/linkmesh-operator/internal/credential"
	"github.com/linkmesh/linkmesh-operator/internal/fleet"
	"github.com/linkmesh/linkmesh-operator/internal/manifests"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
	"github.com/linkmesh/linkmesh-operator/internal/ssa"
)

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
	// Fleet is the OpAMP server's view of the collectors; nil runs without one (no agents ever connect).
	Fleet fleet.Fleet
	// FleetChanges, when set, triggers a reconcile when a group's agents change.
	FleetChanges <-chan event.TypedGenericEvent[*v1alpha1.ManagedCollector]
}

// +kubebuilder:rbac:groups=collectors.linkmesh.io,resources=managedcollectors,verbs=get;list;watch
// +kubebuilder:rbac:groups=collectors.linkmesh.io,resources=managedcollectors/status,verbs=get;patch;update
// +kubebuilder:rbac:groups=collectors.linkmesh.io,resources=enrollmenttokens,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets;configmaps,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=apps,resources=daemonsets,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile runs the phases in order: credentials, config, owned objects, status. Status is written once,
// at the end, whatever happened before.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	mc := &v1alpha1.ManagedCollector{}
	if err := r.Get(ctx, req.NamespacedName, mc); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.NamespacedName)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if !mc.DeletionTimestamp.IsZero() {
		// Owned objects go with the garbage collector; only the in-memory agents need letting go.
		r.forget(req.NamespacedName)
		return ctrl.Result{}, nil
	}

	base := mc.DeepCopy()
	st := &observed{}
	defer func() {
		r.computeStatus(ctx, mc, st)
		// A write cut short by the manager stopping is not a failure of this object.
		if err := r.patchStatus(ctx, base, mc); err != nil && ctx.Err() == nil {
			retErr = errors.Join(retErr, err)
		}
	}()

	if err := r.reconcileCredentials(ctx, mc); err != nil {
		st.applyErr = err
		return ctrl.Result{}, err
	}
	accepted, err := r.reconcileConfig(ctx, mc, st)
	if err != nil {
		st.applyErr = err
		return ctrl.Result{}, err
	}
	if err := r.reconcileWorkload(ctx, mc, accepted, st); err != nil {
		st.applyErr = err
		return ctrl.Result{}, err
	}
	return ctrl.Result{}, nil
}

// observed is what the phases learned, for computeStatus.
type observed struct {
	// configErr is set when spec.config failed validation.
	configErr error
	// acceptedHash is the hash of the config the collectors are told to run; empty if none was ever valid.
	acceptedHash string
	// daemonSet is the current DaemonSet, nil in External mode or before it exists.
	daemonSet *appsv1.DaemonSet
	// applyErr is an API error from applying owned objects.
	applyErr error
}

func (r *Reconciler) forget(key types.NamespacedName) {
	if r.Fleet != nil {
		r.Fleet.Forget(key)
	}
}

// reconcileCredentials makes sure the Secret with the collector and own-metrics tokens exists. Tokens are
// minted once and reused from then on.
func (r *Reconciler) reconcileCredentials(ctx context.Context, mc *v1alpha1.ManagedCollector) error {
	existing, err := ownedSecret(ctx, r.Client, r.APIReader, mc.Namespace, naming.CredentialsSecret(mc.Name), mc.UID)
	if err != nil {
		return err
	}
	tokens := manifests.CollectorTokens{
		Collector:  string(existing.Data[naming.CollectorTokenKey]),
		OwnMetrics: string(existing.Data[naming.OwnMetricsTokenKey]),
	}
	if tokens.Collector == "" {
		tokens.Collector = credential.New(credential.PrefixCollector)
	}
	if tokens.OwnMetrics == "" {
		tokens.OwnMetrics = credential.New(credential.PrefixOwnMetrics)
	}
	return ssa.Apply(ctx, r.Client, manifests.CredentialsSecret(mc, tokens))
}

// reconcileConfig validates spec.config. A valid config is handed to the OpAMP server; an invalid one is
// refused with a Warning and the last accepted config, kept in the ConfigMap, stays in force.
func (r *Reconciler) reconcileConfig(ctx context.Context, mc *v1alpha1.ManagedCollector, st *observed) (string, error) {
	if err := collectorconfig.Validate(mc.Spec.Config); err != nil {
		st.configErr = err
		prev := findCondition(mc.Status.Conditions, v1alpha1.ConditionConfigValid)
		if prev == nil || prev.Status != metav1.ConditionFalse || prev.Message != configMessage(err) || mc.Status.ObservedGeneration != mc.Generation {
			r.Recorder.Eventf(mc, nil, corev1.EventTypeWarning, v1alpha1.EventConfigInvalid, "ValidateConfig",
				"spec.config refused, nothing was changed: %s", configMessage(err))
		}
		cm := &corev1.ConfigMap{}
		err := r.Get(ctx, types.NamespacedName{Namespace: mc.Namespace, Name: naming.SupervisorConfigMap(mc.Name)}, cm)
		if err != nil && !apierrors.IsNotFound(err) {
			return "", fmt.Errorf("reading the last accepted config: %w", err)
		}
		if accepted, ok := cm.Data[manifests.ConfigKey]; ok {
			st.acceptedHash = collectorconfig.Hash(accepted)
			r.setDesired(mc, accepted)
			return accepted, nil
		}
		return "", nil
	}
	st.acceptedHash = collectorconfig.Hash(mc.Spec.Config)
	r.setDesired(mc, mc.Spec.Config)
	return mc.Spec.Config, nil
}

func (r *Reconciler) setDesired(mc *v1alpha1.ManagedCollector, config string) {
	if r.Fleet == nil {
		return
	}
	r.Fleet.SetDesired(client.ObjectKeyFromObject(mc), fleet.Desired{
		Config:     config,
		Hash:       collectorconfig.Hash(config),
		OwnMetrics: manifests.OwnMetricsEnabled(mc),
	})
}

// reconcileWorkload applies the ConfigMap and the DaemonSet. With an invalid config it leaves both exactly as
// they are, and with no config ever accepted it creates neither.
func (r *Reconciler) reconcileWorkload(ctx context.Context, mc *v1alpha1.ManagedCollector, accepted string, st *observed) error {
	if st.configErr != nil {
		if manifests.Mode(mc) == v1alpha1.ModeDaemonSet {
			return r.readDaemonSet(ctx, mc, st)
		}
		return nil
	}
	sup, err := manifests.PodSupervisorYAML(mc, r.OpAMPEndpoint, r.DefaultSupervisorImage)
	if err != nil {
		return err
	}
	if err := ssa.Apply(ctx, r.Client, manifests.SupervisorConfigMap(mc, sup, accepted)); err != nil {
		return err
	}
	if manifests.Mode(mc) == v1alpha1.ModeExternal {
		ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: mc.Namespace, Name: naming.DaemonSet(mc.Name)}}
		if err := r.Delete(ctx, ds); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting the DaemonSet of External mode: %w", err)
		}
		return nil
	}
	if err := ssa.Apply(ctx, r.Client, manifests.DaemonSet(mc, manifests.SupervisorConfigHash(sup), r.DefaultSupervisorImage)); err != nil {
		return err
	}
	return r.readDaemonSet(ctx, mc, st)
}

func (r *Reconciler) readDaemonSet(ctx context.Context, mc *v1alpha1.ManagedCollector, st *observed) error {
	ds := &appsv1.DaemonSet{}
	err := r.Get(ctx, types.NamespacedName{Namespace: mc.Namespace, Name: naming.DaemonSet(mc.Name)}, ds)
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("reading the DaemonSet: %w", err)
	}
	st.daemonSet = ds
	return nil
}

// ownedSecret returns the named Secret if it belongs to owner, an empty Secret if it does not exist, and an
// error if somebody else's Secret has the name: the operator never takes over a Secret it did not create.
func ownedSecret(ctx context.Context, cached client.Reader, uncached client.Reader, namespace, name string, owner types.UID) (*corev1.Secret, error) {
	key := types.NamespacedName{Namespace: namespace, Name: name}
	secret := &corev1.Secret{}
	err := cached.Get(ctx, key, secret)
	if apierrors.IsNotFound(err) {
		// The cache holds only labelled Secrets; a foreign Secret of the same name is found only here.
		err = uncached.Get(ctx, key, secret)
		if apierrors.IsNotFound(err) {
			return &corev1.Secret{}, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("reading Secret %s: %w", name, err)
	}
	if ref := metav1.GetControllerOf(secret); ref == nil || ref.UID != owner {
		return nil, fmt.Errorf("secret %s/%s exists and is not owned by this resource: delete or rename it", namespace, name)
	}
	return secret, nil
}

// SetupWithManager registers the reconciler and its watches. index.Setup must have run on mgr.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	b := ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.ManagedCollector{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&corev1.Secret{}).
		Owns(&corev1.ConfigMap{}).
		Owns(&appsv1.DaemonSet{}).
		// A token's phase changes the number of desired hosts.
		Watches(&v1alpha1.EnrollmentToken{}, handler.EnqueueRequestsFromMapFunc(
			func(_ context.Context, o client.Object) []reconcile.Request {
				et := o.(*v1alpha1.EnrollmentToken)
				return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: et.Namespace, Name: et.Spec.CollectorRef.Name}}}
			}))
	if r.FleetChanges != nil {
		b = b.WatchesRawSource(source.Channel(r.FleetChanges, &handler.TypedEnqueueRequestForObject[*v1alpha1.ManagedCollector]{}))
	}
	return b.Named("managedcollector").Complete(r)
}
