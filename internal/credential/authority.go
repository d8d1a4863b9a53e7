package credential

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
)

// IndexTokenDigest indexes the operator's Secrets by the sha256 of each bearer token they hold, so a
// request finds its credential in the informer cache without an API call and without the index holding
// tokens as keys. index.Setup registers it with TokenDigests.
const IndexTokenDigest = ".linkmesh.tokenDigest"

// IndexTokenRedeemer indexes EnrollmentTokens by status.redeemedBy.instanceUID, with TokenRedeemers: a
// host's instance UID is bound to the token it redeemed, and no other credential may present it.
const IndexTokenRedeemer = "status.redeemedBy.instanceUID"

// ErrTokenTaken means an EnrollmentToken is redeemed by another instance.
var ErrTokenTaken = errors.New("enrollment token redeemed by another instance")

// Use is what a token is presented for. Each Secret key serves one use, so an OpAMP credential is never
// an own-metrics token and the other way round.
type Use int

const (
	// UseOpAMP is a connection to /v1/opamp: a pod's collector token or a host's EnrollmentToken.
	UseOpAMP Use = iota
	// UseOwnMetrics is a post to /v1/metrics: a pod's own-metrics token or a host's derived one.
	UseOwnMetrics
)

// Source says how a collector joined its ManagedCollector.
type Source string

const (
	// SourcePod is a DaemonSet pod that presented the ManagedCollector's collector credential.
	SourcePod Source = "Pod"
	// SourceHost is a host outside the cluster that presented an EnrollmentToken.
	SourceHost Source = "Host"
)

// Membership is what authentication established: the group a collector belongs to and how it got there.
type Membership struct {
	// Collector is the ManagedCollector.
	Collector types.NamespacedName
	// Source is how the collector authenticated.
	Source Source
	// Token is the EnrollmentToken a host joined with; zero for pods.
	Token types.NamespacedName
}

// Principal is who presented a token.
type Principal struct {
	Membership
	// TokenUID is the EnrollmentToken's UID for hosts, so a recreated token of the same name starts over.
	TokenUID types.UID
	// RedeemedBy is the instance UID that redeemed a host's token; empty while it is pending.
	RedeemedBy string
	// Fingerprint names the credential in logs.
	Fingerprint string
	// OwnMetricsToken is the bearer of the own_metrics destination offered to the collector; never its
	// OpAMP credential.
	OwnMetricsToken string
}

// Authority answers, from the informer cache only, who presents a token and for what use. The OpAMP
// server, the OTLP intake and the downloads each ask it; none of them asks another.
type Authority struct {
	cache client.Reader
	clock clock.PassiveClock

	// redeemed maps an EnrollmentToken UID to the instance UID that redeemed it through this replica, so a
	// host's next request does not wait for the cache to catch up with its redeem.
	redeemed sync.Map
}

// NewAuthority returns an Authority reading c, which must have the IndexTokenDigest index; clk decides
// expiry (nil: the real clock).
func NewAuthority(c client.Reader, clk clock.PassiveClock) *Authority {
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Authority{cache: c, clock: clk}
}

// TokenDigests is the IndexTokenDigest index function: every token an operator Secret holds, as its digest.
func TokenDigests(obj client.Object) []string {
	s, ok := obj.(*corev1.Secret)
	if !ok || s.Labels[naming.LabelManagedBy] != naming.FieldOwner {
		return nil
	}
	var out []string
	for _, key := range []string{naming.CollectorTokenKey, naming.OwnMetricsTokenKey, v1alpha1.TokenSecretKey} {
		if v := s.Data[key]; len(v) > 0 {
			out = append(out, digest(string(v)))
		}
	}
	if v := s.Data[v1alpha1.TokenSecretKey]; len(v) > 0 {
		out = append(out, digest(HostOwnMetricsToken(string(v))))
	}
	return out
}

// TokenRedeemers is the IndexTokenRedeemer index function.
func TokenRedeemers(obj client.Object) []string {
	et, ok := obj.(*v1alpha1.EnrollmentToken)
	if !ok || et.Status.RedeemedBy == nil || et.Status.RedeemedBy.InstanceUID == "" {
		return nil
	}
	return []string{et.Status.RedeemedBy.InstanceUID}
}

// RedeemedByInstance says whether an EnrollmentToken is redeemed by the instance UID, as the cache has it.
func (a *Authority) RedeemedByInstance(ctx context.Context, instanceUID string) (bool, error) {
	var tokens v1alpha1.EnrollmentTokenList
	if err := a.cache.List(ctx, &tokens, client.MatchingFields{IndexTokenRedeemer: instanceUID}); err != nil {
		return false, fmt.Errorf("looking up the tokens redeemed by an instance: %w", err)
	}
	for i := range tokens.Items {
		if a.Usable(&tokens.Items[i]) {
			return true, nil
		}
	}
	return false, nil
}

func digest(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// hostOwnMetricsLabel separates the derived own-metrics token from any other use of the enrollment token.
const hostOwnMetricsLabel = "linkmesh.io/own-metrics/v1"

// HostOwnMetricsToken is the own-metrics token of the host that joins with enrollmentToken. It is derived,
// not stored: an EnrollmentToken admits one host, so the token is per host; it is an HMAC, so a collector
// config that leaks it does not leak the enrollment token, which is also the host's OpAMP credential.
func HostOwnMetricsToken(enrollmentToken string) string {
	if enrollmentToken == "" {
		return ""
	}
	mac := hmac.New(sha256.New, []byte(enrollmentToken))
	mac.Write([]byte(hostOwnMetricsLabel))
	return PrefixOwnMetrics + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// Authenticate maps the request's bearer token to its principal for use; ErrUnauthorized when it has no
// valid one.
func (a *Authority) Authenticate(ctx context.Context, r *http.Request, use Use) (*Principal, error) {
	token, ok := Bearer(r)
	if !ok {
		return nil, ErrUnauthorized
	}
	return a.Lookup(ctx, token, use)
}

// Lookup maps token to its principal for use; ErrUnauthorized when it is not a valid token for it. A host's
// token is valid while it is pending and unexpired, or redeemed; whether the presenting instance is the one
// that redeemed it is for the caller to check against Principal.RedeemedBy.
func (a *Authority) Lookup(ctx context.Context, token string, use Use) (*Principal, error) {
	if token == "" || len(token) > MaxTokenLen {
		return nil, ErrUnauthorized
	}
	var secrets corev1.SecretList
	if err := a.cache.List(ctx, &secrets, client.MatchingFields{IndexTokenDigest: digest(token)}); err != nil {
		return nil, fmt.Errorf("looking up the credential: %w", err)
	}
	for i := range secrets.Items {
		sec := &secrets.Items[i]
		switch use {
		case UseOpAMP:
			if Equal(token, string(sec.Data[naming.CollectorTokenKey])) {
				return a.podPrincipal(ctx, sec, token)
			}
			if Equal(token, string(sec.Data[v1alpha1.TokenSecretKey])) {
				return a.hostPrincipal(ctx, sec, token)
			}
		case UseOwnMetrics:
			if Equal(token, string(sec.Data[naming.OwnMetricsTokenKey])) {
				return a.podPrincipal(ctx, sec, token)
			}
			if Equal(token, HostOwnMetricsToken(string(sec.Data[v1alpha1.TokenSecretKey]))) {
				return a.hostPrincipal(ctx, sec, token)
			}
		}
	}
	return nil, ErrUnauthorized
}

func (a *Authority) podPrincipal(ctx context.Context, sec *corev1.Secret, token string) (*Principal, error) {
	name := sec.Labels[naming.LabelCollector]
	if name == "" || sec.Name != naming.CredentialsSecret(name) {
		return nil, ErrUnauthorized
	}
	key := types.NamespacedName{Namespace: sec.Namespace, Name: name}
	mc, err := a.liveCollector(ctx, key)
	if err != nil {
		return nil, err
	}
	if owner := metav1.GetControllerOf(sec); owner == nil || owner.UID != mc.UID || mc.Mode == v1alpha1.ModeExternal {
		// External means enrolled hosts only: a pod credential left from a DaemonSet past admits nothing.
		return nil, ErrUnauthorized
	}
	return &Principal{
		Membership:      Membership{Collector: key, Source: SourcePod},
		Fingerprint:     Fingerprint(token),
		OwnMetricsToken: string(sec.Data[naming.OwnMetricsTokenKey]),
	}, nil
}

func (a *Authority) hostPrincipal(ctx context.Context, sec *corev1.Secret, token string) (*Principal, error) {
	name := sec.Labels[naming.LabelEnrollmentToken]
	if name == "" || sec.Name != naming.TokenSecret(name) {
		return nil, ErrUnauthorized
	}
	key := types.NamespacedName{Namespace: sec.Namespace, Name: name}
	var et v1alpha1.EnrollmentToken
	if err := a.cache.Get(ctx, key, &et); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, ErrUnauthorized
		}
		return nil, fmt.Errorf("reading EnrollmentToken %s: %w", key, err)
	}
	if !metav1.IsControlledBy(sec, &et) || (et.Status.SecretName != "" && et.Status.SecretName != sec.Name) ||
		!a.Usable(&et) {
		return nil, ErrUnauthorized
	}
	collector := types.NamespacedName{Namespace: et.Namespace, Name: et.Spec.CollectorRef.Name}
	if err := a.CheckCollector(ctx, collector); err != nil {
		return nil, err
	}
	return &Principal{
		Membership:      Membership{Collector: collector, Source: SourceHost, Token: key},
		TokenUID:        et.UID,
		RedeemedBy:      a.Redeemer(&et),
		Fingerprint:     Fingerprint(token),
		OwnMetricsToken: HostOwnMetricsToken(string(sec.Data[v1alpha1.TokenSecretKey])),
	}, nil
}

// collectorFacts are what admission needs to know of a ManagedCollector.
type collectorFacts struct {
	UID  types.UID
	Mode v1alpha1.CollectorMode
}

// liveCollector reads what admission needs of a ManagedCollector from the cache without copying it: every
// handshake asks, and a deep copy of the whole object, its status with 50 agents included, was a tenth of
// the operator's CPU while 10,000 collectors connected. Nothing of the cached object leaves this function.
// ErrUnauthorized when it does not exist or is being deleted.
func (a *Authority) liveCollector(ctx context.Context, key types.NamespacedName) (collectorFacts, error) {
	var mc v1alpha1.ManagedCollector
	if err := a.cache.Get(ctx, key, &mc, client.UnsafeDisableDeepCopy); err != nil {
		if apierrors.IsNotFound(err) {
			return collectorFacts{}, ErrUnauthorized
		}
		return collectorFacts{}, fmt.Errorf("reading ManagedCollector %s: %w", key, err)
	}
	if mc.DeletionTimestamp != nil {
		return collectorFacts{}, ErrUnauthorized
	}
	return collectorFacts{UID: mc.UID, Mode: mc.Spec.Mode}, nil
}

// CheckCollector is nil if the ManagedCollector exists and is not being deleted; ErrUnauthorized
// otherwise, as nothing may join a group that is gone.
func (a *Authority) CheckCollector(ctx context.Context, key types.NamespacedName) error {
	_, err := a.liveCollector(ctx, key)
	return err
}

// Collector returns the ManagedCollector if it exists and is not being deleted; ErrUnauthorized otherwise,
// as nothing may join a group that is gone.
func (a *Authority) Collector(ctx context.Context, key types.NamespacedName) (*v1alpha1.ManagedCollector, error) {
	var mc v1alpha1.ManagedCollector
	if err := a.cache.Get(ctx, key, &mc); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, ErrUnauthorized
		}
		return nil, fmt.Errorf("reading ManagedCollector %s: %w", key, err)
	}
	if mc.DeletionTimestamp != nil {
		return nil, ErrUnauthorized
	}
	return &mc, nil
}

// Token returns the EnrollmentToken p joined with, as the cache has it now, if it still admits p's host:
// the same object (not a recreated one of the same name), not revoked, expired or deleted since.
func (a *Authority) Token(ctx context.Context, p *Principal) (*v1alpha1.EnrollmentToken, error) {
	var et v1alpha1.EnrollmentToken
	if err := a.cache.Get(ctx, p.Token, &et); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, ErrUnauthorized
		}
		return nil, fmt.Errorf("reading EnrollmentToken %s: %w", p.Token, err)
	}
	if et.UID != p.TokenUID || !a.Usable(&et) {
		return nil, ErrUnauthorized
	}
	return &et, nil
}

// Redeemer is the instance UID that redeemed et, empty while nobody did; this replica's own redeems count
// before the cache shows them.
func (a *Authority) Redeemer(et *v1alpha1.EnrollmentToken) string {
	if v, ok := a.redeemed.Load(et.UID); ok {
		return v.(string)
	}
	if rb := et.Status.RedeemedBy; rb != nil {
		return rb.InstanceUID
	}
	return ""
}

// NoteRedeemed records a redeem this replica wrote, until the cache shows it.
func (a *Authority) NoteRedeemed(tokenUID types.UID, instanceUID string) {
	a.redeemed.Store(tokenUID, instanceUID)
}

// Usable says whether a token admits its host now: pending and unexpired, or redeemed; never once
// revoked, expired or deleted.
func (a *Authority) Usable(et *v1alpha1.EnrollmentToken) bool {
	if et.DeletionTimestamp != nil || et.Spec.Revoked {
		return false
	}
	switch et.Status.Phase {
	case v1alpha1.TokenExpired, v1alpha1.TokenRevoked:
		return false
	}
	if a.Redeemer(et) != "" {
		return true
	}
	return et.Status.Phase == v1alpha1.TokenPending && et.Status.ExpiresAt != nil &&
		a.clock.Now().Before(et.Status.ExpiresAt.Time)
}

// CheckHost tells whether token is an EnrollmentToken that the host with instanceUID (empty for a host that
// has not connected yet) could connect with now, without redeeming it: the downloads ask before they hand
// out a supervisor.yaml or an installer goes to work. Every refusal is ErrUnauthorized.
func (a *Authority) CheckHost(ctx context.Context, token, instanceUID string) (*Principal, *v1alpha1.ManagedCollector, error) {
	p, err := a.Lookup(ctx, token, UseOpAMP)
	if err != nil {
		return nil, nil, err
	}
	if p.Source != SourceHost || (p.RedeemedBy != "" && p.RedeemedBy != instanceUID) {
		return nil, nil, ErrUnauthorized
	}
	mc, err := a.Collector(ctx, p.Collector)
	if err != nil {
		return nil, nil, err
	}
	return p, mc, nil
}

// Watch forgets this replica's redeems of EnrollmentTokens that are deleted: nothing may use them again,
// and the record would otherwise outlive them.
func (a *Authority) Watch(ctx context.Context, c cache.Cache) error {
	tokens, err := c.GetInformer(ctx, &v1alpha1.EnrollmentToken{})
	if err != nil {
		return fmt.Errorf("watching EnrollmentTokens: %w", err)
	}
	_, err = tokens.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		DeleteFunc: func(obj any) {
			if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if et, ok := obj.(*v1alpha1.EnrollmentToken); ok {
				a.redeemed.Delete(et.UID)
			}
		},
	})
	if err != nil {
		return fmt.Errorf("watching EnrollmentTokens: %w", err)
	}
	return nil
}
