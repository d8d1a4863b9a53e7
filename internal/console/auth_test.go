package console

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// fakeReviews answers TokenReviews for the token "good" (user alice) and SubjectAccessReviews by allow, and
// counts what it was asked.
type fakeReviews struct {
	mu           sync.Mutex
	allow        func(ns string, attr *authorizationv1.ResourceAttributes) bool
	tokenReviews int
	sars         []string
	fail         bool
}

func (f *fakeReviews) Create(_ context.Context, obj client.Object, _ ...client.CreateOption) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return errors.New("connection refused")
	}
	switch o := obj.(type) {
	case *authenticationv1.TokenReview:
		f.tokenReviews++
		if o.Spec.Token == "good" {
			o.Status = authenticationv1.TokenReviewStatus{Authenticated: true, User: authenticationv1.UserInfo{Username: "alice", Groups: []string{"devs"}}}
		}
	case *authorizationv1.SubjectAccessReview:
		ra := o.Spec.ResourceAttributes
		f.sars = append(f.sars, ra.Namespace+"/"+ra.Verb+"/"+ra.Resource)
		o.Status.Allowed = o.Spec.User == "alice" && f.allow(ra.Namespace, ra)
	}
	return nil
}

func request(token string) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	return r
}

func TestAuthenticate(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	f := &fakeReviews{}
	a := newAccess(true, f, clk)
	for _, token := range []string{"", "bad", "bad"} {
		if _, err := a.authenticate(request(token)); !errors.Is(err, errUnauthenticated) {
			t.Errorf("token %q: %v, want unauthenticated", token, err)
		}
	}
	if f.tokenReviews != 1 {
		t.Errorf("%d TokenReviews for no token and one bad token twice, want 1 (none without a token, the refusal cached)", f.tokenReviews)
	}
	r := request("good")
	r.Header.Set("Authorization", "bearer   good")
	v, err := a.authenticate(r)
	if err != nil || v.Name() != "alice" {
		t.Fatalf("good token: %v %v", v, err)
	}
	if _, err := a.authenticate(request("good")); err != nil {
		t.Fatal(err)
	}
	if f.tokenReviews != 2 {
		t.Errorf("%d TokenReviews, want the good token reviewed once", f.tokenReviews)
	}
	clk.Step(userTTL + time.Second)
	if _, err := a.authenticate(request("good")); err != nil {
		t.Fatal(err)
	}
	if f.tokenReviews != 3 {
		t.Errorf("%d TokenReviews, want the good token reviewed again after %v", f.tokenReviews, userTTL)
	}
	f.fail = true
	_, err = a.authenticate(request("another"))
	if err == nil || errors.Is(err, errUnauthenticated) || strings.Contains(err.Error(), "another") {
		t.Errorf("a failing API server: %v, want an error that is not a 401 and does not show the token", err)
	}
	if v, err := newAccess(false, f, clk).authenticate(request("")); err != nil || v.user != nil {
		t.Errorf("loopback: %v %v, want everyone", v, err)
	}
}

func TestVisibleNamespaces(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	f := &fakeReviews{allow: func(ns string, _ *authorizationv1.ResourceAttributes) bool { return ns == "a" || ns == "c" }}
	a := newAccess(true, f, clk)
	v, err := a.authenticate(request("good"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := a.visibleNamespaces(context.Background(), v, []string{"a", "b", "c"})
	if err != nil || strings.Join(got, ",") != "a,c" {
		t.Errorf("visible %v %v, want a,c", got, err)
	}
	n := len(f.sars)
	if n != 4 {
		t.Errorf("%d reviews %v, want one cluster-wide and one per namespace", n, f.sars)
	}
	_, _ = a.visibleNamespaces(context.Background(), v, []string{"a", "b", "c"})
	if len(f.sars) != n {
		t.Errorf("the second view made %d more reviews, want them cached", len(f.sars)-n)
	}
	clk.Step(decisionTTL + time.Second)
	_, _ = a.visibleNamespaces(context.Background(), v, []string{"a"})
	if len(f.sars) != n+2 {
		t.Errorf("after the TTL: %d more reviews, want 2", len(f.sars)-n)
	}

	all := newAccess(true, &fakeReviews{allow: func(string, *authorizationv1.ResourceAttributes) bool { return true }}, clk)
	v, _ = all.authenticate(request("good"))
	if got, _ := all.visibleNamespaces(context.Background(), v, []string{"a", "b"}); len(got) != 2 {
		t.Errorf("a cluster-wide viewer sees %v", got)
	}
	if reviews := all.reviews.(*fakeReviews).sars; len(reviews) != 1 || reviews[0] != "/get/managedcollectors" {
		t.Errorf("reviews %v, want one cluster-wide", reviews)
	}
}

func TestBrokerScopesAndCoalesces(t *testing.T) {
	b := newBroker()
	one := b.subscribe("a", "x")
	ns := b.subscribe("a", "")
	every := b.subscribe("", "")
	b.publish("a", "y")
	b.publish("b", "z")
	b.publish("a", "y")
	if got, _ := one.drain(); len(got) != 0 {
		t.Errorf("the page of a/x was told of %v", got)
	}
	if got, _ := ns.drain(); strings.Join(got, ",") != "a" {
		t.Errorf("namespace a's page was told of %v", got)
	}
	if got, _ := every.drain(); len(got) != 2 {
		t.Errorf("the all-namespaces page was told of %v", got)
	}
	select {
	case <-every.notify:
	default:
		t.Error("no notification")
	}
	select {
	case <-every.notify:
		t.Error("three changes, two notifications: want them coalesced")
	default:
	}
	b.unsubscribe(every)
	b.publish("c", "w")
	if got, _ := every.drain(); len(got) != 0 {
		t.Errorf("an unsubscribed stream was told of %v", got)
	}
}
