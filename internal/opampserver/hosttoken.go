package opampserver

import (
	"context"
	"errors"

	"k8s.io/apimachinery/pkg/types"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/credential"
)

// ErrTokenRejected is every reason CheckHostToken refuses a token: wrong, expired, revoked, or redeemed by
// another instance. Like the WebSocket upgrade's 401, it does not say which.
var ErrTokenRejected = errors.New("enrollment token rejected")

// HostEnrollment is what an EnrollmentToken admits a host to.
type HostEnrollment struct {
	// Token is the EnrollmentToken.
	Token types.NamespacedName
	// Collector is the ManagedCollector the host joins.
	Collector *v1alpha1.ManagedCollector
}

// CheckHostToken tells whether token is an EnrollmentToken that a host with instanceUID could connect with
// now, by the same cache lookup and checks as the WebSocket upgrade: pending and unexpired, or redeemed by
// instanceUID (empty for a host that has not connected yet). It redeems nothing. The downloads use it
// before they hand out a supervisor.yaml or an installer goes to work.
func (s *Server) CheckHostToken(ctx context.Context, token, instanceUID string) (*HostEnrollment, error) {
	if token == "" || len(token) > maxTokenLen {
		return nil, ErrTokenRejected
	}
	secrets, err := s.candidates(ctx, token)
	if err != nil {
		return nil, err
	}
	for i := range secrets {
		sec := &secrets[i]
		if !credential.Equal(token, string(sec.Data[v1alpha1.TokenSecretKey])) {
			continue
		}
		p, err := s.hostPrincipal(ctx, sec, token)
		if errors.Is(err, errUnauthorized) {
			return nil, ErrTokenRejected
		}
		if err != nil {
			return nil, err
		}
		var et v1alpha1.EnrollmentToken
		if err := s.cache.Get(ctx, p.membership.Token, &et); err != nil {
			return nil, ErrTokenRejected
		}
		// This replica's own redeems are ahead of the cache.
		owner := ""
		if v, ok := s.redeemed.Load(p.tokenUID); ok {
			owner, _ = v.(string)
		} else if et.Status.Phase == v1alpha1.TokenRedeemed && et.Status.RedeemedBy != nil {
			owner = et.Status.RedeemedBy.InstanceUID
		}
		if owner != "" && owner != instanceUID {
			return nil, ErrTokenRejected
		}
		mc, err := s.collector(ctx, p.membership.Collector)
		if errors.Is(err, errUnauthorized) {
			return nil, ErrTokenRejected
		}
		if err != nil {
			return nil, err
		}
		return &HostEnrollment{Token: p.membership.Token, Collector: mc}, nil
	}
	return nil, ErrTokenRejected
}
