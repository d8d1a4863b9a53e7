package managedcollector

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/credential"
	"github.com/linkmesh/linkmesh-operator/internal/manifests"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
	"github.com/linkmesh/linkmesh-operator/internal/ownership"
	"github.com/linkmesh/linkmesh-operator/internal/ssa"
)

// applied remembers, per owned object, the desired object last applied and the version the API server
// gave it, so that a reconcile caused only by the fleet (a collector connected, applied, failed, reported
// metrics) writes status and nothing else: an object is applied again only when what the spec makes of it
// changed, or somebody changed the object since (its resourceVersion, or a DaemonSet's generation, moved).
// It is memory of this replica's own writes only; a new leader applies everything once.
type applied struct {
	mu      sync.Mutex
	objects map[appliedKey]appliedRecord
}

type appliedKey struct {
	collector types.NamespacedName
	kind      string
}

type appliedRecord struct {
	desired string
	version string
}

// applies counts the owned-object applies, for tests and the benchmark.
var applies struct {
	sync.Mutex
	n int
}

// Applies is the number of owned-object applies made so far by this process.
func Applies() int {
	applies.Lock()
	defer applies.Unlock()
	return applies.n
}

// apply applies obj unless it is what was last applied and the cached live object is still the one that
// apply produced. live is the cached object, nil when there is none.
func (r *Reconciler) apply(ctx context.Context, mc *v1alpha1.ManagedCollector, obj client.Object, live client.Object) error {
	k := appliedKey{collector: client.ObjectKeyFromObject(mc), kind: obj.GetObjectKind().GroupVersionKind().Kind}
	raw, err := json.Marshal(obj)
	if err != nil {
		return fmt.Errorf("encoding %s %s: %w", k.kind, obj.GetName(), err)
	}
	sum := sha256.Sum256(raw)
	want := hex.EncodeToString(sum[:])
	r.applied.mu.Lock()
	rec, ok := r.applied.objects[k]
	r.applied.mu.Unlock()
	if ok && live != nil && rec.desired == want && rec.version == version(live) {
		return nil
	}
	out, err := ssa.ApplyObject(ctx, r.Client, obj)
	if err != nil {
		return err
	}
	applies.Lock()
	applies.n++
	applies.Unlock()
	r.applied.mu.Lock()
	if r.applied.objects == nil {
		r.applied.objects = map[appliedKey]appliedRecord{}
	}
	r.applied.objects[k] = appliedRecord{desired: want, version: version(out)}
	r.applied.mu.Unlock()
	return nil
}

// forget drops the records of a ManagedCollector's objects.
func (a *applied) forget(key types.NamespacedName) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k := range a.objects {
		if k.collector == key {
			delete(a.objects, k)
		}
	}
}

// version is what changes when somebody else changes obj: its resourceVersion, except for a DaemonSet,
// whose status moves with every pod: its generation.
func version(obj metav1.Object) string {
	if _, ok := obj.(*appsv1.DaemonSet); ok {
		return "g" + strconv.FormatInt(obj.GetGeneration(), 10)
	}
	if u, ok := obj.(interface{ GetKind() string }); ok && u.GetKind() == "DaemonSet" {
		return "g" + strconv.FormatInt(obj.GetGeneration(), 10)
	}
	return obj.GetResourceVersion()
}

// applyAll applies the owned objects: the credentials Secret and the DaemonSet in DaemonSet mode (removed
// in External mode), and the supervisor ConfigMap, which persists the accepted config before any replica
// pushes it. With an invalid config the DaemonSet and supervisor.yaml are left exactly as they are, and
// with no config ever accepted nothing is created.
func (r *Reconciler) applyAll(ctx context.Context, mc *v1alpha1.ManagedCollector, obs *observed, pl *plan) error {
	external := modeOf(mc) == v1alpha1.ModeExternal
	if external {
		if err := r.deleteOwned(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: mc.Namespace, Name: naming.CredentialsSecret(mc.Name)}}, mc); err != nil {
			return err
		}
	} else if err := r.applyCredentials(ctx, mc); err != nil {
		return err
	}
	if !pl.acceptedOK {
		return nil
	}
	var sup []byte
	if pl.configErr != nil && obs.configMap != nil {
		// Nothing else changes while the spec is invalid; a rollout of the last accepted config goes on.
		sup = []byte(obs.configMap.Data[naming.SupervisorConfigKey])
	} else {
		var err error
		if sup, err = manifests.PodSupervisorYAML(mc, r.OpAMPEndpoint); err != nil {
			return err
		}
	}
	cm, err := manifests.SupervisorConfigMap(mc, sup, pl.accepted)
	if err != nil {
		return err
	}
	var liveCM client.Object
	if obs.configMap != nil {
		liveCM = obs.configMap
	}
	if err := r.apply(ctx, mc, cm, liveCM); err != nil {
		return err
	}
	if external {
		return r.deleteOwned(ctx, &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: mc.Namespace, Name: naming.DaemonSet(mc.Name)}}, mc)
	}
	if pl.configErr != nil {
		// The DaemonSet stays exactly as it is while the spec is invalid; the status reports the config error.
		return nil //nolint:nilerr // configErr is the spec's, not an apply failure
	}
	var liveDS client.Object
	if obs.daemonSet != nil {
		liveDS = obs.daemonSet
	}
	return r.apply(ctx, mc, manifests.DaemonSet(mc, manifests.SupervisorConfigHash(sup), r.DefaultSupervisorImage), liveDS)
}

// applyCredentials makes sure the Secret with the collector and own-metrics tokens exists. Tokens are
// minted once and reused from then on.
func (r *Reconciler) applyCredentials(ctx context.Context, mc *v1alpha1.ManagedCollector) error {
	key := types.NamespacedName{Namespace: mc.Namespace, Name: naming.CredentialsSecret(mc.Name)}
	existing, err := ownership.Secret(ctx, r.Client, r.APIReader, key, mc)
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
	var live client.Object
	if existing.ResourceVersion != "" {
		live = existing
	}
	return r.apply(ctx, mc, manifests.CredentialsSecret(mc, tokens), live)
}

// deleteOwned deletes obj if it exists and mc controls it.
func (r *Reconciler) deleteOwned(ctx context.Context, obj client.Object, mc *v1alpha1.ManagedCollector) error {
	if err := r.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !metav1.IsControlledBy(obj, mc) {
		return nil
	}
	if err := r.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting %s %s, which External mode does not use: %w", obj.GetObjectKind().GroupVersionKind().Kind, obj.GetName(), err)
	}
	return nil
}
