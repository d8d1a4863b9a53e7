package rollout_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/open-telemetry/opamp-go/protobufs"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
	"github.com/linkmesh/linkmesh-operator/test/framework/argocdhealth"
	"github.com/linkmesh/linkmesh-operator/test/framework/simagent"
	"github.com/linkmesh/linkmesh-operator/test/framework/testenv"
)

const (
	timeout  = 60 * time.Second
	interval = 50 * time.Millisecond
	bake     = 2 * time.Second
)

// config is revision i of a valid collector config.
func config(i int) string {
	return fmt.Sprintf(`receivers:
  otlp:
    protocols:
      grpc:
exporters:
  debug:
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
# revision %d
`, i)
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func progressive(steps ...intstr.IntOrString) *v1alpha1.RolloutSpec {
	return &v1alpha1.RolloutSpec{Strategy: v1alpha1.RolloutProgressive, Steps: steps, BakeTime: &metav1.Duration{Duration: bake}}
}

// newCollector creates a ManagedCollector for n simulated pods with config(0).
func newCollector(t *testing.T, n int, rollout *v1alpha1.RolloutSpec) types.NamespacedName {
	t.Helper()
	ns := testenv.Namespace(t, env.Client, "rollout")
	limit := int32(2 * n)
	mc := &v1alpha1.ManagedCollector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fleet"},
		Spec:       v1alpha1.ManagedCollectorSpec{Config: config(0), Rollout: rollout, MaxCollectors: &limit},
	}
	if err := env.Client.Create(context.Background(), mc); err != nil {
		t.Fatal(err)
	}
	return client.ObjectKeyFromObject(mc)
}

func token(g Gomega, key types.NamespacedName) string {
	sec := &corev1.Secret{}
	g.Eventually(func(g Gomega) {
		g.Expect(env.Client.Get(context.Background(), types.NamespacedName{Namespace: key.Namespace, Name: naming.CredentialsSecret(key.Name)}, sec)).To(Succeed())
		g.Expect(sec.Data[naming.CollectorTokenKey]).NotTo(BeEmpty())
	}, timeout, interval).Should(Succeed())
	return string(sec.Data[naming.CollectorTokenKey])
}

func get(g Gomega, key types.NamespacedName) *v1alpha1.ManagedCollector {
	mc := &v1alpha1.ManagedCollector{}
	g.Expect(env.Client.Get(context.Background(), key, mc)).To(Succeed())
	return mc
}

func edit(g Gomega, key types.NamespacedName, mut func(*v1alpha1.ManagedCollectorSpec)) {
	g.Eventually(func() error {
		mc := get(g, key)
		mut(&mc.Spec)
		return env.Client.Update(context.Background(), mc)
	}, timeout, interval).Should(Succeed())
}

func cond(mc *v1alpha1.ManagedCollector, t string) metav1.Condition {
	if c := apimeta.FindStatusCondition(mc.Status.Conditions, t); c != nil {
		return *c
	}
	return metav1.Condition{}
}

// kstatusOf is what kstatus (and so kubectl's and Flux's wait) makes of the object as the API server has it.
func kstatusOf(g Gomega, key types.NamespacedName) status.Status {
	res, err := status.Compute(served(g, key))
	g.Expect(err).NotTo(HaveOccurred())
	return res.Status
}

// argoHealth is what Argo CD's health check in config/argocd makes of it.
func argoHealth(g Gomega, key types.NamespacedName) string {
	st, _, err := argocdhealth.Health(argocdhealth.ManagedCollector, served(g, key).Object)
	g.Expect(err).NotTo(HaveOccurred())
	return st
}

// served is the ManagedCollector as the API server serves it, as JSON decodes it.
func served(g Gomega, key types.NamespacedName) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(v1alpha1.GroupVersion.String())
	u.SetKind("ManagedCollector")
	g.Expect(env.Client.Get(context.Background(), key, u)).To(Succeed())
	return u
}

// fleet is a set of simulated supervisors; fail says which config hashes an agent fails.
type fleet struct {
	agents []*simagent.Agent
	mu     sync.Mutex
	// got counts, per config hash, the agents that were sent it at least once.
	got map[string]map[int]bool
}

// start connects n agents; fail(i, hash) makes agent i report that config FAILED (failed), or report
// itself unhealthy after applying it (unhealthy).
func start(t *testing.T, key types.NamespacedName, n int, fail func(i int, hash string) (failed, unhealthy bool)) *fleet {
	t.Helper()
	g := NewWithT(t)
	tok := token(g, key)
	f := &fleet{got: map[string]map[int]bool{}}
	for i := range n {
		i := i
		var a *simagent.Agent
		a = simagent.Start(t, addr, tok, simagent.Options{
			Host: fmt.Sprintf("node-%03d", i),
			Apply: func(rc *protobufs.AgentRemoteConfig) (protobufs.RemoteConfigStatuses, string) {
				h := hex.EncodeToString(rc.ConfigHash)
				f.mu.Lock()
				if f.got[h] == nil {
					f.got[h] = map[int]bool{}
				}
				f.got[h][i] = true
				f.mu.Unlock()
				if fail != nil {
					if failed, _ := fail(i, h); failed {
						return protobufs.RemoteConfigStatuses_RemoteConfigStatuses_FAILED, "receiver otlp: listen tcp :4317: bind: address already in use"
					}
				}
				return protobufs.RemoteConfigStatuses_RemoteConfigStatuses_APPLIED, ""
			},
			OnConfig: func(rc *protobufs.AgentRemoteConfig, _ protobufs.RemoteConfigStatuses) {
				if fail == nil {
					return
				}
				_, unhealthy := fail(i, hex.EncodeToString(rc.ConfigHash))
				go func() { _ = a.SetHealth(!unhealthy, "") }()
			},
		})
		f.agents = append(f.agents, a)
	}
	return f
}

// sent is how many agents were sent hash at least once.
func (f *fleet) sent(hash string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.got[hash])
}

// running is how many agents last received hash.
func (f *fleet) running(hash string) int {
	n := 0
	for _, a := range f.agents {
		if r := a.Received(); len(r) > 0 && hex.EncodeToString(r[len(r)-1].ConfigHash) == hash {
			n++
		}
	}
	return n
}

// waitApplied waits until all n agents run config hash and status says so.
func waitApplied(t *testing.T, key types.NamespacedName, f *fleet, hash string) {
	t.Helper()
	g := NewWithT(t)
	g.Eventually(func(g Gomega) {
		g.Expect(f.running(hash)).To(Equal(len(f.agents)))
		mc := get(g, key)
		g.Expect(mc.Status.ConfigHash).To(Equal(hash))
		g.Expect(mc.Status.Counts.ConfigApplied).To(Equal(int32(len(f.agents))))
		g.Expect(cond(mc, v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
	}, timeout, interval).Should(Succeed())
}

// events are the Events of the ManagedCollector with the reason.
func events(g Gomega, key types.NamespacedName, reason string) []eventsv1.Event {
	list := &eventsv1.EventList{}
	g.Expect(env.Client.List(context.Background(), list, client.InNamespace(key.Namespace))).To(Succeed())
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Name == key.Name && e.Regarding.Kind == "ManagedCollector" && e.Reason == reason {
			out = append(out, e)
		}
	}
	return out
}
