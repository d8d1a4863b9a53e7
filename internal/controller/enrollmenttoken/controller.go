// Package enrollmenttoken reconciles EnrollmentTokens: it mints each token into a Secret the token owns and
// drives the phase from status: a Pending token past status.expiresAt becomes Expired, a revoked one Revoked.
// Redeeming is the OpAMP server's job.
package enrollmenttoken

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/bounded"
	"github.com/linkmesh/linkmesh-operator/internal/credential"
	"github.com/linkmesh/linkmesh-operator/internal/index"
	"github.com/linkmesh/linkmesh-operator/internal/manifests"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
	"github.com/linkmesh/linkmesh-operator/internal/ownership"
	"github.com/linkmesh/linkmesh-operator/internal/ssa"
)

// Reconciler reconciles EnrollmentTokens.
type Reconciler struct {
	client.Client
	// APIReader reads past the cache, which holds only the operator's own Secrets.
	APIReader client.Reader
	Recorder  events.EventRecorder
	// Clock decides expiry; tests inject a fake one.
	Clock clock.PassiveClock
	// InstallCommand goes into status.installCommand of a usable token; empty leaves it out.
	InstallCommand string

	// warned is the last Secret apply failure warned about, per EnrollmentToken (a types.NamespacedName to
	// a warning), so that a failure retried with backoff raises one Event, not one per retry, even before
	// the cache shows the condition that records it.
	warned sync.Map
}

// warning is a failure an Event was raised for.
type warning struct {
	uid     types.UID
	message string
}

// +kubebuilder:rbac:groups=collectors.linkmesh.io,resources=enrollmenttokens,verbs=get;list;watch
// +kubebuilder:rbac:groups=collectors.linkmesh.io,resources=enrollmenttokens/status,verbs=get;patch;update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;patch

// Reconcile mints the Secret once, then computes the phase and writes status once.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, retErr error) {
	et := &v1alpha1.EnrollmentToken{}
	if err := r.Get(ctx, req.NamespacedName, et); err != nil {
		if apierrors.IsNotFound(err) {
			r.warned.Delete(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !et.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	base := et.DeepCopy()
	// announce holds the Events of the phase transitions this reconcile found. They are recorded once the
	// status that shows them is written: a reconcile that read the token before that write computes the
	// same transitions again, and its write, guarded by the resourceVersion it read, conflicts.
	var announce []func()
	defer func() {
		switch err := r.patchStatus(ctx, base, et); {
		case apierrors.IsConflict(err):
			// The OpAMP server redeemed the token meanwhile, or another reconcile wrote first; the change
			// triggers the next reconcile.
		case err != nil:
			retErr = errors.Join(retErr, err)
		default:
			for _, record := range announce {
				record()
			}
		}
		if ctx.Err() != nil {
			// Cut short by the manager stopping: the next start reconciles the token anyway.
			retErr = nil
		}
		if retErr != nil {
			// An error requeues with backoff; a RequeueAfter beside it would be ignored.
			res = ctrl.Result{}
		}
	}()

	if err := r.reconcileSecret(ctx, et); err != nil {
		r.secretFailed(et, err)
		return ctrl.Result{}, err
	}
	r.warned.Delete(req.NamespacedName)
	collectorFound, err := r.collectorExists(ctx, et)
	if err != nil {
		return ctrl.Result{}, err
	}
	now := r.Clock.Now()
	from := et.Status.Phase
	wasRedeemed := usableReason(et) == v1alpha1.ReasonRedeemed
	computeStatus(et, now, collectorFound)
	if !wasRedeemed && usableReason(et) == v1alpha1.ReasonRedeemed && et.Status.RedeemedBy != nil {
		// The redeem wrote the phase; this is where it is first seen as the token's state.
		rb := et.Status.RedeemedBy
		announce = append(announce, func() {
			r.Recorder.Eventf(et, nil, corev1.EventTypeNormal, v1alpha1.EventTokenRedeemed, "Redeem",
				"redeemed by host %q (instance %s); only that host may use the token from now on", rb.HostName, rb.InstanceUID)
		})
	}
	et.Status.InstallCommand = ""
	if p := et.Status.Phase; p == v1alpha1.TokenPending || p == v1alpha1.TokenRedeemed {
		et.Status.InstallCommand = r.InstallCommand
	}
	if to := et.Status.Phase; to != from {
		switch to {
		case v1alpha1.TokenExpired:
			expiresAt := et.Status.ExpiresAt.UTC().Format(time.RFC3339)
			announce = append(announce, func() {
				r.Recorder.Eventf(et, nil, corev1.EventTypeNormal, v1alpha1.EventTokenExpired, "Expire",
					"token expired unredeemed at %s: mint a new EnrollmentToken", expiresAt)
			})
		case v1alpha1.TokenRevoked:
			announce = append(announce, func() {
				r.Recorder.Eventf(et, nil, corev1.EventTypeNormal, v1alpha1.EventTokenRevoked, "Revoke", "token revoked")
			})
		}
	}
	if et.Status.Phase == v1alpha1.TokenPending {
		// Requeue at the expiry; a little later rather than early, so the first requeue sees it expired.
		return ctrl.Result{RequeueAfter: et.Status.ExpiresAt.Sub(now) + time.Second}, nil
	}
	return ctrl.Result{}, nil
}

// reconcileSecret mints the token into its Secret once; the token never changes afterwards.
func (r *Reconciler) reconcileSecret(ctx context.Context, et *v1alpha1.EnrollmentToken) error {
	key := types.NamespacedName{Namespace: et.Namespace, Name: naming.TokenSecret(et.Name)}
	secret, err := ownership.Secret(ctx, r.Client, r.APIReader, key, et)
	if err != nil {
		return err
	}
	token := string(secret.Data[v1alpha1.TokenSecretKey])
	if token == "" {
		token = credential.New(credential.PrefixEnrollment)
	}
	if err := ssa.Apply(ctx, r.Client, manifests.TokenSecret(et, token)); err != nil {
		// The API server's answer, or a webhook's, could quote what was sent; it goes into status and Events.
		if strings.Contains(err.Error(), token) {
			return errors.New(strings.ReplaceAll(err.Error(), token, "<token>"))
		}
		return err
	}
	et.Status.SecretName = key.Name
	return nil
}

// secretFailed records that the token's Secret cannot be written: Usable=False with the error, so the
// token does not sit there without a word, and a Warning Event once per distinct failure.
func (r *Reconciler) secretFailed(et *v1alpha1.EnrollmentToken, err error) {
	msg := bounded.Truncate("cannot write the token's Secret "+naming.TokenSecret(et.Name)+": "+err.Error(), maxMessageLen)
	prev := apimeta.FindStatusCondition(et.Status.Conditions, v1alpha1.ConditionUsable)
	recorded := prev != nil && prev.Reason == v1alpha1.ReasonSecretApplyFailed && prev.Message == msg
	key := types.NamespacedName{Namespace: et.Namespace, Name: et.Name}
	w := warning{uid: et.UID, message: msg}
	if last, ok := r.warned.Swap(key, w); !recorded && (!ok || last.(warning) != w) {
		r.Recorder.Eventf(et, nil, corev1.EventTypeWarning, v1alpha1.EventApplyFailed, "ApplySecret", "%s",
			bounded.Truncate(msg, maxNoteLen))
	}
	et.Status.ObservedGeneration = et.Generation
	apimeta.SetStatusCondition(&et.Status.Conditions, metav1.Condition{
		Type: v1alpha1.ConditionUsable, Status: metav1.ConditionFalse, ObservedGeneration: et.Generation,
		Reason: v1alpha1.ReasonSecretApplyFailed, Message: msg,
	})
}

// Bounds of the API: metav1.Condition's message, an events/v1 Event's note.
const (
	maxMessageLen = 32768
	maxNoteLen    = 1024
)

func (r *Reconciler) collectorExists(ctx context.Context, et *v1alpha1.EnrollmentToken) (bool, error) {
	mc := &v1alpha1.ManagedCollector{}
	err := r.Get(ctx, types.NamespacedName{Namespace: et.Namespace, Name: et.Spec.CollectorRef.Name}, mc)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading ManagedCollector %s: %w", et.Spec.CollectorRef.Name, err)
	}
	return mc.DeletionTimestamp.IsZero(), nil
}

// patchStatus writes the status once with an optimistic lock: the OpAMP server redeems tokens with a
// resourceVersion precondition, and a stale reconcile must not overwrite a redemption.
func (r *Reconciler) patchStatus(ctx context.Context, base, et *v1alpha1.EnrollmentToken) error {
	if statusEqual(base, et) {
		return nil
	}
	patch := client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})
	if err := r.Status().Patch(ctx, et, patch, client.FieldOwner(naming.FieldOwner)); err != nil {
		return fmt.Errorf("writing status: %w", err)
	}
	return nil
}

// SetupWithManager registers the reconciler and its watches. index.Setup must have run on mgr.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.EnrollmentToken{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{},
			// The OpAMP server writes status.phase; a redeemed token must drop its expiry requeue.
			phaseChanged{},
		))).
		Owns(&corev1.Secret{}).
		// A token's Usable condition follows its ManagedCollector's existence.
		Watches(&v1alpha1.ManagedCollector{}, handler.EnqueueRequestsFromMapFunc(r.tokensOfCollector),
			builder.WithPredicates(predicate.Funcs{
				CreateFunc: func(event.CreateEvent) bool { return true },
				DeleteFunc: func(event.DeleteEvent) bool { return true },
				UpdateFunc: func(event.UpdateEvent) bool { return false },
			})).
		Named("enrollmenttoken").
		Complete(r)
}

func (r *Reconciler) tokensOfCollector(ctx context.Context, o client.Object) []reconcile.Request {
	tokens := &v1alpha1.EnrollmentTokenList{}
	if err := r.List(ctx, tokens, client.InNamespace(o.GetNamespace()), client.MatchingFields{index.TokenCollector: o.GetName()}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing EnrollmentTokens of a ManagedCollector")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(tokens.Items))
	for _, t := range tokens.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&t)})
	}
	return reqs
}
