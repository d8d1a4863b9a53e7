package opampserver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/credential"
	"github.com/linkmesh/linkmesh-operator/internal/fleet"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
)

// IndexTokenDigest indexes the operator's Secrets by the sha256 of each bearer token they hold, so a
// connection finds its credential in the informer cache without an API call and without the index
// holding tokens as keys.
const IndexTokenDigest = ".linkmesh.tokenDigest"

// maxTokenLen bounds the Authorization header's token; ours are 47 bytes.
const maxTokenLen = 512

// errUnauthorized is every authentication failure: the client learns nothing about which check failed.
var errUnauthorized = errors.New("unauthorized")

// errTokenTaken means an EnrollmentToken is redeemed by another instance.
var errTokenTaken = errors.New("enrollment token redeemed by another instance")

// IndexFields registers the field indexes the server looks credentials up with. Call it before the
// manager's cache starts.
func IndexFields(ctx context.Context, indexer client.FieldIndexer) error {
	if err := indexer.IndexField(ctx, &corev1.Secret{}, IndexTokenDigest, tokenDigests); err != nil {
		return fmt.Errorf("indexing Secrets by token digest: %w", err)
	}
	return nil
}

func tokenDigests(obj client.Object) []string {
	s, ok := obj.(*corev1.Secret)
	if !ok || s.Labels[naming.LabelManagedBy] != naming.FieldOwner {
		return nil
	}
	var out []string
	for _, key := range []string{naming.CollectorTokenKey, v1alpha1.TokenSecretKey} {
		if v := s.Data[key]; len(v) > 0 {
			out = append(out, digest(string(v)))
		}
	}
	return append(out, ownMetricsDigests(s)...)
}

func digest(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// principal is who an accepted connection is.
type principal struct {
	membership fleet.Membership
	// tokenUID is the EnrollmentToken's UID for hosts, so a recreated token of the same name starts over.
	tokenUID types.UID
	// fingerprint names the credential in logs.
	fingerprint string
	// ownMetricsToken is offered as the own_metrics destination's bearer; never the OpAMP credential.
	ownMetricsToken string
}

// bearer extracts the token of an "Authorization: Bearer <token>" header.
func bearer(r *http.Request) (string, bool) {
	values := r.Header.Values("Authorization")
	if len(values) != 1 {
		return "", false
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" || len(token) > maxTokenLen ||
		strings.ContainsAny(token, " \t") {
		return "", false
	}
	return token, true
}

// requestCandidates is candidates for the request's bearer token; errUnauthorized when it has none.
func (s *Server) requestCandidates(ctx context.Context, r *http.Request) (string, []corev1.Secret, error) {
	token, ok := bearer(r)
	if !ok {
		return "", nil, errUnauthorized
	}
	secrets, err := s.candidates(ctx, token)
	return token, secrets, err
}

// RefuseUnauthenticated answers a request whose authentication failed and says whether it did: 401 with
// no detail for a bad credential, so a guesser learns nothing about which check failed, and 503 with
// Retry-After when the cache failed, so the client retries rather than gives up on its credential.
func RefuseUnauthenticated(w http.ResponseWriter, log logr.Logger, err error, what string) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, errUnauthorized):
		w.WriteHeader(http.StatusUnauthorized)
	default:
		log.Error(err, "Cannot authenticate "+what)
		w.Header().Set("Retry-After", "5")
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	return true
}

// candidates are the operator's Secrets that hold token under some key, found through the digest index in
// the cache; the caller compares the key it accepts in constant time.
func (s *Server) candidates(ctx context.Context, token string) ([]corev1.Secret, error) {
	var secrets corev1.SecretList
	if err := s.cache.List(ctx, &secrets, client.MatchingFields{IndexTokenDigest: digest(token)}); err != nil {
		return nil, fmt.Errorf("looking up the credential: %w", err)
	}
	return secrets.Items, nil
}

// authenticate maps the request's bearer token to a principal, from the cache only.
func (s *Server) authenticate(ctx context.Context, r *http.Request) (*principal, error) {
	token, secrets, err := s.requestCandidates(ctx, r)
	if err != nil {
		return nil, err
	}
	for i := range secrets {
		sec := &secrets[i]
		if credential.Equal(token, string(sec.Data[naming.CollectorTokenKey])) {
			return s.collectorPrincipal(ctx, sec, token)
		}
		if credential.Equal(token, string(sec.Data[v1alpha1.TokenSecretKey])) {
			return s.hostPrincipal(ctx, sec, token)
		}
	}
	return nil, errUnauthorized
}

func (s *Server) collectorPrincipal(ctx context.Context, sec *corev1.Secret, token string) (*principal, error) {
	name := sec.Labels[naming.LabelCollector]
	if name == "" || sec.Name != naming.CredentialsSecret(name) {
		return nil, errUnauthorized
	}
	key := types.NamespacedName{Namespace: sec.Namespace, Name: name}
	mc, err := s.collector(ctx, key)
	if err != nil {
		return nil, err
	}
	if !ownedBy(sec, mc.UID) {
		return nil, errUnauthorized
	}
	return &principal{
		membership:      fleet.Membership{Collector: key, Source: fleet.SourcePod},
		fingerprint:     credential.Fingerprint(token),
		ownMetricsToken: string(sec.Data[naming.OwnMetricsTokenKey]),
	}, nil
}

func (s *Server) hostPrincipal(ctx context.Context, sec *corev1.Secret, token string) (*principal, error) {
	name := sec.Labels[naming.LabelEnrollmentToken]
	if name == "" || sec.Name != naming.TokenSecret(name) {
		return nil, errUnauthorized
	}
	key := types.NamespacedName{Namespace: sec.Namespace, Name: name}
	var et v1alpha1.EnrollmentToken
	if err := s.cache.Get(ctx, key, &et); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, errUnauthorized
		}
		return nil, fmt.Errorf("reading EnrollmentToken %s: %w", key, err)
	}
	if !ownedBy(sec, et.UID) || (et.Status.SecretName != "" && et.Status.SecretName != sec.Name) ||
		!usable(&et, s.clock.Now()) {
		return nil, errUnauthorized
	}
	collector := types.NamespacedName{Namespace: et.Namespace, Name: et.Spec.CollectorRef.Name}
	if _, err := s.collector(ctx, collector); err != nil {
		return nil, err
	}
	return &principal{
		membership:      fleet.Membership{Collector: collector, Source: fleet.SourceHost, Token: key},
		tokenUID:        et.UID,
		fingerprint:     credential.Fingerprint(token),
		ownMetricsToken: HostOwnMetricsToken(string(sec.Data[v1alpha1.TokenSecretKey])),
	}, nil
}

// collector returns the ManagedCollector if it exists and is not being deleted.
func (s *Server) collector(ctx context.Context, key types.NamespacedName) (*v1alpha1.ManagedCollector, error) {
	var mc v1alpha1.ManagedCollector
	if err := s.cache.Get(ctx, key, &mc); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, errUnauthorized
		}
		return nil, fmt.Errorf("reading ManagedCollector %s: %w", key, err)
	}
	if mc.DeletionTimestamp != nil {
		return nil, errUnauthorized
	}
	return &mc, nil
}

// ownedBy is false when the Secret's controller is not the object with the given UID: a leftover Secret of
// a deleted-and-recreated owner must not keep working. A Secret without a controller reference is judged
// by its name and labels alone.
func ownedBy(sec *corev1.Secret, uid types.UID) bool {
	ref := metav1.GetControllerOf(sec)
	return ref == nil || ref.UID == uid
}

// usable says whether a token still admits connections at now.
func usable(et *v1alpha1.EnrollmentToken, now time.Time) bool {
	if et.DeletionTimestamp != nil || et.Spec.Revoked {
		return false
	}
	switch et.Status.Phase {
	case v1alpha1.TokenPending:
		return et.Status.ExpiresAt != nil && now.Before(et.Status.ExpiresAt.Time)
	case v1alpha1.TokenRedeemed:
		return et.Status.RedeemedBy != nil && et.Status.RedeemedBy.InstanceUID != ""
	default:
		return false
	}
}

// maxRedeemAttempts bounds the retries after conflicts that were not another host's redeem, for example
// the EnrollmentToken reconciler writing its conditions at the same time.
const maxRedeemAttempts = 4

// admitHost checks, at a host's first message, that its token is pending or redeemed by this very
// instance, and redeems a pending one. N hosts racing with one token get exactly one winner: the status
// patch carries the resourceVersion it was computed from, so all but one fail with a conflict and then
// see the winner.
func (s *Server) admitHost(ctx context.Context, p *principal, uid, hostName string) error {
	if owner, ok := s.redeemed.Load(p.tokenUID); ok {
		if owner.(string) != uid {
			return errTokenTaken
		}
		// Still check revocation and deletion, which the cache shows without an API call.
		var et v1alpha1.EnrollmentToken
		if err := s.cache.Get(ctx, p.membership.Token, &et); err != nil || et.UID != p.tokenUID || !usable(&et, s.clock.Now()) {
			return errUnauthorized
		}
		return nil
	}

	var et v1alpha1.EnrollmentToken
	if err := s.cache.Get(ctx, p.membership.Token, &et); err != nil {
		if apierrors.IsNotFound(err) {
			return errUnauthorized
		}
		return fmt.Errorf("reading EnrollmentToken: %w", err)
	}
	for attempt := 0; ; attempt++ {
		if et.UID != p.tokenUID || !usable(&et, s.clock.Now()) {
			return errUnauthorized
		}
		if et.Status.Phase == v1alpha1.TokenRedeemed {
			if et.Status.RedeemedBy.InstanceUID != uid {
				return errTokenTaken
			}
			s.redeemed.Store(p.tokenUID, uid)
			return nil
		}
		redeemed := et.DeepCopy()
		now := metav1.NewTime(s.clock.Now())
		redeemed.Status.Phase = v1alpha1.TokenRedeemed
		redeemed.Status.RedeemedBy = &v1alpha1.RedeemedBy{InstanceUID: uid, HostName: truncate(hostName, 253)}
		redeemed.Status.RedeemedAt = &now
		err := s.client.Status().Patch(ctx, redeemed, client.MergeFromWithOptions(&et, client.MergeFromWithOptimisticLock{}))
		if err == nil {
			s.redeemed.Store(p.tokenUID, uid)
			s.log.Info("Enrollment token redeemed", "enrollmentToken", p.membership.Token.String(),
				"instanceUID", uid, "hostName", hostName, "credential", p.fingerprint)
			return nil
		}
		if !apierrors.IsConflict(err) || attempt+1 >= maxRedeemAttempts {
			return fmt.Errorf("redeeming EnrollmentToken %s: %w", p.membership.Token, err)
		}
		// The cache is behind the winner's write; read the token as it is now.
		if err := s.apiReader.Get(ctx, p.membership.Token, &et); err != nil {
			if apierrors.IsNotFound(err) {
				return errUnauthorized
			}
			return fmt.Errorf("reading EnrollmentToken %s after a conflict: %w", p.membership.Token, err)
		}
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
