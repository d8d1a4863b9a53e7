//go:build e2e

package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/test/framework/testenv"
	"github.com/linkmesh/linkmesh-operator/test/infrastructure/localagent"
)

const (
	timeout  = 60 * time.Second
	interval = 100 * time.Millisecond
)

func newNamespace(t *testing.T) string { return testenv.Namespace(t, env.Client, "e2e") }

// freePort is a port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func getMC(g Gomega, ns, name string) *v1alpha1.ManagedCollector {
	mc := &v1alpha1.ManagedCollector{}
	g.Expect(env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, mc)).To(Succeed())
	return mc
}

func cond(mc *v1alpha1.ManagedCollector, t string) metav1.Condition {
	if c := apimeta.FindStatusCondition(mc.Status.Conditions, t); c != nil {
		return *c
	}
	return metav1.Condition{}
}

func eventsOf(g Gomega, ns, name string) []eventsv1.Event {
	list := &eventsv1.EventList{}
	g.Expect(env.Client.List(context.Background(), list, client.InNamespace(ns))).To(Succeed())
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Name == name {
			out = append(out, e)
		}
	}
	return out
}

// createCollector creates a ManagedCollector and waits until the operator has rendered its ConfigMap, the
// moment a pod (or a test playing one) can start.
func createCollector(t *testing.T, ns, name string, spec v1alpha1.ManagedCollectorSpec) {
	t.Helper()
	g := NewWithT(t)
	ctx := context.Background()
	g.Expect(env.Client.Create(ctx, &v1alpha1.ManagedCollector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       spec,
	})).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name + "-supervisor"}, &corev1.ConfigMap{})).To(Succeed())
	}, timeout, interval).Should(Succeed())
}

// startNode plays a pod of the ManagedCollector: it reads the rendered ConfigMap and Secret and runs the
// real supervisor with them. The supervisor is stopped, and its process group killed, when the test ends.
func startNode(t *testing.T, ns, name, dir string) (*localagent.Node, *localagent.Process) {
	t.Helper()
	n, err := localagent.FromCluster(context.Background(), env.Client, types.NamespacedName{Namespace: ns, Name: name},
		dir, bins, "node-"+name, name+"-collector-abcde")
	if err != nil {
		t.Fatal(err)
	}
	return n, run(t, n)
}

func run(t *testing.T, n *localagent.Node) *localagent.Process {
	t.Helper()
	p, err := n.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.Stop(15 * time.Second)
		if t.Failed() {
			for _, f := range []string{n.LogPath(), filepath.Join(n.StorageDir(), "agent.log")} {
				if log, err := os.ReadFile(f); err == nil {
					t.Logf("log %s:\n%s", f, tail(log, 3000))
				}
			}
		}
	})
	return p
}

func tail(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	return b[len(b)-n:]
}

func nodeDir(t *testing.T, name string) string {
	d := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}
