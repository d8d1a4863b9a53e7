// Package leakcheck proves, at the end of a test suite, that no token the operator minted got anywhere but
// its Secret: not into a log line at any verbosity, an Event, a ConfigMap, a DaemonSet, or the spec or
// status of a ManagedCollector or an EnrollmentToken. It learns the tokens by watching the operator's
// Secrets for the whole run, so a token whose Secret was deleted meanwhile still counts.
package leakcheck

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/credential"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
)

// Checker collects tokens and log lines during a run and checks them at its end.
type Checker struct {
	mu     sync.Mutex
	tokens map[string]bool
	logs   bytes.Buffer
	lines  int
}

// New returns an empty Checker.
func New() *Checker { return &Checker{tokens: map[string]bool{}} }

// Remember adds a token the test minted itself.
func (c *Checker) Remember(token string) {
	if token == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tokens[token] = true
}

// Tokens is the number of tokens known.
func (c *Checker) Tokens() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.tokens)
}

// rememberSecret adds the tokens an operator Secret holds, and the own-metrics token a host derives from its
// enrollment token.
func (c *Checker) rememberSecret(obj any) {
	if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	s, ok := obj.(*corev1.Secret)
	if !ok {
		return
	}
	for _, key := range []string{naming.CollectorTokenKey, naming.OwnMetricsTokenKey, v1alpha1.TokenSecretKey} {
		c.Remember(string(s.Data[key]))
	}
	if t := string(s.Data[v1alpha1.TokenSecretKey]); t != "" {
		c.Remember(credential.HostOwnMetricsToken(t))
	}
}

// WatchSecrets remembers every token of every Secret the operator labels as its own, from now until ctx
// ends; it returns once the watch has listed what exists.
func (c *Checker) WatchSecrets(ctx context.Context, cfg *rest.Config, scheme *runtime.Scheme) error {
	owned := labels.SelectorFromSet(labels.Set{naming.LabelManagedBy: naming.FieldOwner})
	ca, err := cache.New(cfg, cache.Options{Scheme: scheme, ByObject: map[client.Object]cache.ByObject{
		&corev1.Secret{}: {Label: owned},
	}})
	if err != nil {
		return fmt.Errorf("leakcheck: %w", err)
	}
	inf, err := ca.GetInformer(ctx, &corev1.Secret{})
	if err != nil {
		return fmt.Errorf("leakcheck: %w", err)
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    c.rememberSecret,
		UpdateFunc: func(_, obj any) { c.rememberSecret(obj) },
		DeleteFunc: c.rememberSecret,
	}); err != nil {
		return fmt.Errorf("leakcheck: %w", err)
	}
	go func() { _ = ca.Start(ctx) }()
	if !ca.WaitForCacheSync(ctx) {
		return errors.New("leakcheck: the Secret watch did not sync")
	}
	return nil
}

// Write keeps a log line; a Checker is an io.Writer for a logger's output.
func (c *Checker) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines += bytes.Count(p, []byte("\n"))
	return c.logs.Write(p)
}

// Sync implements zapcore.WriteSyncer.
func (c *Checker) Sync() error { return nil }

// Report is what Check looked at.
type Report struct {
	// Tokens, Objects and LogLines are how many of each were checked.
	Tokens, Objects, LogLines int
	// Leaks names each place a token was found, without the token.
	Leaks []string
}

func (r Report) String() string {
	s := fmt.Sprintf("leakcheck: %d tokens against %d objects and %d log lines", r.Tokens, r.Objects, r.LogLines)
	if len(r.Leaks) > 0 {
		s += ": a token is in " + strings.Join(r.Leaks, "; ")
	}
	return s
}

// kinds are what the operator writes, or writes into, beside its Secrets.
var kinds = []client.ObjectList{
	&eventsv1.EventList{}, &corev1.EventList{}, &corev1.ConfigMapList{}, &appsv1.DaemonSetList{},
	&v1alpha1.ManagedCollectorList{}, &v1alpha1.EnrollmentTokenList{},
}

// Check lists every object of the kinds above, in every namespace, and looks for every token in each, in
// the forms a careless writer would leave it: as is, without its prefix, and base64-encoded. A kind the API
// server does not serve (a suite without the CRDs) is skipped.
func (c *Checker) Check(ctx context.Context, r client.Reader) (Report, error) {
	c.mu.Lock()
	forms := map[string]bool{}
	for t := range c.tokens {
		forms[t] = true
		if _, rest, ok := strings.Cut(t, "_"); ok && len(rest) >= 16 {
			forms[rest] = true
		}
		forms[base64.StdEncoding.EncodeToString([]byte(t))] = true
	}
	report := Report{Tokens: len(c.tokens), LogLines: c.lines}
	logs := c.logs.String()
	c.mu.Unlock()

	found := func(text string) bool {
		for f := range forms {
			if strings.Contains(text, f) {
				return true
			}
		}
		return false
	}
	for _, list := range kinds {
		if err := r.List(ctx, list); err != nil {
			if apimeta.IsNoMatchError(err) {
				continue
			}
			return report, fmt.Errorf("leakcheck: listing %T: %w", list, err)
		}
		items, err := apimeta.ExtractList(list)
		if err != nil {
			return report, fmt.Errorf("leakcheck: %w", err)
		}
		for _, item := range items {
			report.Objects++
			b, err := json.Marshal(item)
			if err != nil {
				return report, fmt.Errorf("leakcheck: %w", err)
			}
			if found(string(b)) {
				obj, _ := item.(client.Object)
				report.Leaks = append(report.Leaks, fmt.Sprintf("%T %s/%s", item, obj.GetNamespace(), obj.GetName()))
			}
		}
	}
	// Longest first: a token's form without its prefix is inside the token, and replacing it first would
	// leave the prefix standing before "<token>".
	byLength := slices.SortedFunc(maps.Keys(forms), func(a, b string) int { return len(b) - len(a) })
	for i, line := range strings.Split(logs, "\n") {
		if found(line) {
			for _, f := range byLength {
				line = strings.ReplaceAll(line, f, "<token>")
			}
			if len(line) > 300 {
				line = line[:300] + "..."
			}
			report.Leaks = append(report.Leaks, fmt.Sprintf("log line %d: %s", i+1, line))
		}
	}
	sort.Strings(report.Leaks)
	return report, nil
}
