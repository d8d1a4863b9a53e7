package console

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	utilcache "k8s.io/apimachinery/pkg/util/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
)

// How long review answers are reused, and how many are kept. A token's review is cached by the token's
// SHA-256, never the token itself. Shorter for refusals, so a token that was just granted works soon.
const (
	userTTL         = 30 * time.Second
	refusedTTL      = 5 * time.Second
	decisionTTL     = 30 * time.Second
	maxCachedUsers  = 1024
	maxDecisions    = 16384
	reviewTimeout   = 10 * time.Second
	parallelReviews = 8
)

// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// resourceAttr is what a viewer must be allowed to do in a namespace to see part of a page.
type resourceAttr struct {
	group, resource, verb string
}

var (
	// getCollectors gates everything of a namespace: its ManagedCollectors, and with them their pages.
	getCollectors = resourceAttr{v1alpha1.GroupVersion.Group, "managedcollectors", "get"}
	// listTokens gates the EnrollmentTokens section.
	listTokens = resourceAttr{v1alpha1.GroupVersion.Group, "enrollmenttokens", "list"}
	// listEvents gates the Events section.
	listEvents = resourceAttr{"events.k8s.io", "events", "list"}
)

// errUnauthenticated is answered with 401.
var errUnauthenticated = errors.New("a valid Kubernetes bearer token is required: Authorization: Bearer <token>")

// viewer is who asks. A nil user is a viewer on the loopback listener, who reached it through kubectl
// port-forward (already authorized by the API server) or from the pod itself, and sees every namespace.
type viewer struct {
	user *authenticationv1.UserInfo
}

// Name is the viewer's user name for the page header; empty on loopback.
func (v *viewer) Name() string {
	if v.user == nil {
		return ""
	}
	return v.user.Username
}

// creator is the part of a client that creates reviews; the manager's client sends them to the API server.
type creator interface {
	Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error
}

// access answers who a request is and what they may see, with TokenReview and SubjectAccessReview.
type access struct {
	requireToken bool
	reviews      creator
	users        *utilcache.LRUExpireCache
	decisions    *utilcache.LRUExpireCache
}

func newAccess(requireToken bool, reviews creator, clk utilcache.Clock) *access {
	return &access{
		requireToken: requireToken,
		reviews:      reviews,
		users:        utilcache.NewLRUExpireCacheWithClock(maxCachedUsers, clk),
		decisions:    utilcache.NewLRUExpireCacheWithClock(maxDecisions, clk),
	}
}

// bearerToken is the token of an Authorization: Bearer header, or empty.
func bearerToken(r *http.Request) string {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// authenticate returns the viewer of r: on loopback anyone, otherwise the user the API server says the bearer
// token is, or errUnauthenticated.
func (a *access) authenticate(r *http.Request) (*viewer, error) {
	if !a.requireToken {
		return &viewer{}, nil
	}
	token := bearerToken(r)
	if token == "" {
		return nil, errUnauthenticated
	}
	sum := sha256.Sum256([]byte(token))
	key := hex.EncodeToString(sum[:])
	if v, ok := a.users.Get(key); ok {
		if u, _ := v.(*authenticationv1.UserInfo); u != nil {
			return &viewer{user: u}, nil
		}
		return nil, errUnauthenticated
	}
	ctx, cancel := context.WithTimeout(r.Context(), reviewTimeout)
	defer cancel()
	tr := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}}
	if err := a.reviews.Create(ctx, tr); err != nil {
		// The error names the review, never the token.
		return nil, fmt.Errorf("reviewing the token: %w", err)
	}
	if !tr.Status.Authenticated {
		a.users.Add(key, (*authenticationv1.UserInfo)(nil), refusedTTL)
		return nil, errUnauthenticated
	}
	u := tr.Status.User
	a.users.Add(key, &u, userTTL)
	return &viewer{user: &u}, nil
}

// allowed says whether v may do attr in namespace ns ("" is every namespace).
func (a *access) allowed(ctx context.Context, v *viewer, ns string, attr resourceAttr) (bool, error) {
	if v.user == nil {
		return true, nil
	}
	key := decisionKey(v.user, ns, attr)
	if d, ok := a.decisions.Get(key); ok {
		return d.(bool), nil
	}
	ctx, cancel := context.WithTimeout(ctx, reviewTimeout)
	defer cancel()
	extra := map[string]authorizationv1.ExtraValue{}
	for k, val := range v.user.Extra {
		extra[k] = authorizationv1.ExtraValue(val)
	}
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: v.user.Username, UID: v.user.UID, Groups: v.user.Groups, Extra: extra,
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: attr.verb, Group: attr.group, Resource: attr.resource},
	}}
	if err := a.reviews.Create(ctx, sar); err != nil {
		return false, fmt.Errorf("reviewing access to %s %s in namespace %q: %w", attr.verb, attr.resource, ns, err)
	}
	a.decisions.Add(key, sar.Status.Allowed, decisionTTL)
	return sar.Status.Allowed, nil
}

// visibleNamespaces are those of namespaces in which v may get ManagedCollectors: all of them for a viewer
// allowed cluster-wide (one review), otherwise one review per namespace, a few at a time, each cached.
func (a *access) visibleNamespaces(ctx context.Context, v *viewer, namespaces []string) ([]string, error) {
	if ok, err := a.allowed(ctx, v, "", getCollectors); err != nil || ok {
		return namespaces, err
	}
	var (
		mu      sync.Mutex
		visible []string
		errs    []error
		wg      sync.WaitGroup
		slots   = make(chan struct{}, parallelReviews)
	)
	for _, ns := range namespaces {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots; wg.Done() }()
			ok, err := a.allowed(ctx, v, ns, getCollectors)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			} else if ok {
				visible = append(visible, ns)
			}
		}()
	}
	wg.Wait()
	slices.Sort(visible)
	return visible, errors.Join(errs...)
}

// decisionKey identifies a review: the whole user (name, UID, groups, extra) and what was asked.
func decisionKey(u *authenticationv1.UserInfo, ns string, attr resourceAttr) string {
	var b strings.Builder
	for _, s := range []string{u.Username, u.UID, ns, attr.group, attr.resource, attr.verb} {
		b.WriteString(s)
		b.WriteByte(0)
	}
	for _, g := range u.Groups {
		b.WriteString(g)
		b.WriteByte(1)
	}
	for _, k := range slices.Sorted(maps.Keys(u.Extra)) {
		b.WriteString(k)
		b.WriteByte(2)
		for _, val := range u.Extra[k] {
			b.WriteString(val)
			b.WriteByte(3)
		}
	}
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:])
}
