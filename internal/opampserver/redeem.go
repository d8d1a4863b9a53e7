package opampserver

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/bounded"
	"github.com/linkmesh/linkmesh-operator/internal/credential"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
	"github.com/linkmesh/linkmesh-operator/internal/ssa"
)

// maxRedeemAttempts bounds the retries after conflicts that were not another host's redeem, for example
// the EnrollmentToken reconciler writing its conditions at the same time.
const maxRedeemAttempts = 4

// admitHost checks, at a host's first message, that its token is pending or redeemed by this very
// instance, and redeems a pending one. It is the OpAMP server's one API write.
//
// The redeem applies status.phase (Redeemed), status.redeemedBy and status.redeemedAt under its own field
// manager, naming.RedeemFieldOwner, with the resourceVersion it read as a precondition: N hosts racing with
// one token, on one replica or several, get exactly one winner, as all others fail with a conflict and then
// see the winner. It forces ownership of status.phase, whose Pending -> Redeemed transition is the
// redeem's; every other transition and every other status field is the EnrollmentToken reconciler's, which
// writes under the same precondition.
func (s *Server) admitHost(ctx context.Context, p *credential.Principal, uid, hostName string) error {
	et, err := s.credentials.Token(ctx, p)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		if redeemer := s.credentials.Redeemer(et); redeemer != "" {
			if redeemer != uid {
				return credential.ErrTokenTaken
			}
			return nil
		}
		now := metav1.NewTime(s.clock.Now())
		redeem := &v1alpha1.EnrollmentToken{
			TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "EnrollmentToken"},
			ObjectMeta: metav1.ObjectMeta{Namespace: et.Namespace, Name: et.Name, ResourceVersion: et.ResourceVersion},
			Status: v1alpha1.EnrollmentTokenStatus{
				Phase:      v1alpha1.TokenRedeemed,
				RedeemedBy: &v1alpha1.RedeemedBy{InstanceUID: uid, HostName: bounded.Truncate(hostName, 253)},
				RedeemedAt: &now,
			},
		}
		err := ssa.ApplyStatus(ctx, s.client, redeem, naming.RedeemFieldOwner, true)
		if err == nil {
			s.credentials.NoteRedeemed(et.UID, uid)
			s.log.Info("Enrollment token redeemed", "enrollmentToken", p.Token.String(),
				"instanceUID", uid, "hostName", hostName, "credential", p.Fingerprint)
			return nil
		}
		if !apierrors.IsConflict(err) || attempt+1 >= maxRedeemAttempts {
			return fmt.Errorf("redeeming EnrollmentToken %s: %w", p.Token, err)
		}
		// The cache is behind the winner's write; read the token as it is now.
		fresh := &v1alpha1.EnrollmentToken{}
		if err := s.apiReader.Get(ctx, p.Token, fresh); err != nil {
			if apierrors.IsNotFound(err) {
				return credential.ErrUnauthorized
			}
			return fmt.Errorf("reading EnrollmentToken %s after a conflict: %w", p.Token, err)
		}
		if fresh.UID != p.TokenUID || !s.credentials.Usable(fresh) {
			return credential.ErrUnauthorized
		}
		et = fresh
	}
}
