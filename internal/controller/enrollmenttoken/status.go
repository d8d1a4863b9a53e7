package enrollmenttoken

import (
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
)

// TTL is spec.ttl or the default of 15 minutes.
func TTL(et *v1alpha1.EnrollmentToken) time.Duration {
	if et.Spec.TTL != nil {
		return et.Spec.TTL.Duration
	}
	d, _ := time.ParseDuration(v1alpha1.DefaultTokenTTL)
	return d
}

// computeStatus derives the phase. Expiry counts from the creation time, so it does not depend on when the
// operator first saw the token. Expired and Revoked are final; a redeemed token never expires.
func computeStatus(et *v1alpha1.EnrollmentToken, now time.Time, collectorFound bool) {
	s := &et.Status
	s.ObservedGeneration = et.Generation
	if s.ExpiresAt == nil {
		s.ExpiresAt = &metav1.Time{Time: et.CreationTimestamp.Add(TTL(et))}
	}
	switch {
	case s.Phase == v1alpha1.TokenExpired || s.Phase == v1alpha1.TokenRevoked:
	case et.Spec.Revoked:
		s.Phase = v1alpha1.TokenRevoked
	case s.Phase == v1alpha1.TokenRedeemed:
	case !now.Before(s.ExpiresAt.Time):
		s.Phase = v1alpha1.TokenExpired
	default:
		s.Phase = v1alpha1.TokenPending
	}

	cond := metav1.Condition{Type: v1alpha1.ConditionUsable, ObservedGeneration: et.Generation}
	switch {
	case s.Phase == v1alpha1.TokenExpired:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, v1alpha1.ReasonExpired,
			"the token was not redeemed before it expired: mint a new EnrollmentToken"
	case s.Phase == v1alpha1.TokenRevoked:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, v1alpha1.ReasonRevoked,
			"the token was revoked; its host, if any, is refused"
	case !collectorFound:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, v1alpha1.ReasonCollectorNotFound,
			"ManagedCollector "+et.Spec.CollectorRef.Name+" does not exist in this namespace"
	case s.Phase == v1alpha1.TokenRedeemed:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionTrue, v1alpha1.ReasonRedeemed,
			"redeemed; accepted only from the host that redeemed it"
	default:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionTrue, v1alpha1.ReasonPending,
			"waiting for a host to redeem the token before status.expiresAt"
	}
	apimeta.SetStatusCondition(&s.Conditions, cond)
}

func statusEqual(a, b *v1alpha1.EnrollmentToken) bool {
	return equality.Semantic.DeepEqual(a.Status, b.Status)
}

// phaseChanged passes updates that changed status.phase.
type phaseChanged struct {
	predicate.Funcs
}

func (phaseChanged) Update(e event.UpdateEvent) bool {
	oldT, ok1 := e.ObjectOld.(*v1alpha1.EnrollmentToken)
	newT, ok2 := e.ObjectNew.(*v1alpha1.EnrollmentToken)
	return ok1 && ok2 && oldT.Status.Phase != newT.Status.Phase
}

// usableReason is the reason of the Usable condition, empty without one.
func usableReason(et *v1alpha1.EnrollmentToken) string {
	if c := apimeta.FindStatusCondition(et.Status.Conditions, v1alpha1.ConditionUsable); c != nil {
		return c.Reason
	}
	return ""
}
