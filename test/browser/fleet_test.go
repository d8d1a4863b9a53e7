//go:build browser

package browser_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
	"github.com/linkmesh/linkmesh-operator/internal/operator"
	"github.com/linkmesh/linkmesh-operator/test/framework/simagent"
	"github.com/linkmesh/linkmesh-operator/test/framework/testenv"
	"github.com/linkmesh/linkmesh-operator/test/infrastructure/localagent"
)

// TestLargeFleet is one ManagedCollector with more collectors than status lists: CONSOLE_FLEET simulated ones
// (50 by default; 1000 for the measurement) and, when LINKMESH_E2E_BIN names the e2e binaries
// (hack/e2e-binaries.sh), one real supervisor with its collector. The pages must count them all, list the 50
// that status keeps, and say so. MEASURE lines give how long each page took in the browser.
func TestLargeFleet(t *testing.T) {
	n := 50
	if s := os.Getenv("CONSOLE_FLEET"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			t.Fatalf("CONSOLE_FLEET=%q: want a positive number", s)
		}
	}
	op, stop, err := testenv.RunOperator(env, operator.Options{ConsoleBindAddress: "127.0.0.1:0", SkipControllerNameValidation: true})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	g := NewWithT(t)
	ctx := context.Background()
	ns := testenv.Namespace(t, env.Client, "fleet")
	// envtest schedules no pods, so the default cap (100 with no desired pods) would refuse the rest.
	limit := int32(n + 1)
	mc := &v1alpha1.ManagedCollector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nodes"},
		Spec:       v1alpha1.ManagedCollectorSpec{Mode: v1alpha1.ModeDaemonSet, Config: config, MaxCollectors: &limit},
	}
	g.Expect(env.Client.Create(ctx, mc)).To(Succeed())
	sec := &corev1.Secret{}
	g.Eventually(func(g Gomega) {
		g.Expect(env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: naming.CredentialsSecret(mc.Name)}, sec)).To(Succeed())
		g.Expect(sec.Data[naming.CollectorTokenKey]).NotTo(BeEmpty())
	}, timeout, interval).Should(Succeed())
	started := time.Now()
	agents := make([]*simagent.Agent, 0, n)
	defer func() {
		for _, a := range agents {
			a.Stop()
		}
	}()
	for i := range n {
		agents = append(agents, simagent.Start(t, op.ListenerAddr().String(), string(sec.Data[naming.CollectorTokenKey]), simagent.Options{Host: fmt.Sprintf("sim-%04d", i)}))
	}
	want := n
	if dir := os.Getenv("LINKMESH_E2E_BIN"); dir != "" {
		node, err := localagent.FromCluster(ctx, env.Client, types.NamespacedName{Namespace: ns, Name: mc.Name}, t.TempDir(),
			localagent.Binaries{Supervisor: dir + "/opampsupervisor", Collector: dir + "/otelcol"}, "node-real", "nodes-collector-real")
		g.Expect(err).NotTo(HaveOccurred())
		p, err := node.Start()
		g.Expect(err).NotTo(HaveOccurred())
		defer func() { _ = p.Stop(15 * time.Second) }()
		want++
	}
	g.Eventually(func(g Gomega) {
		cur := status(g, ns, mc.Name)
		g.Expect(cur.Status.Counts.Connected).To(BeEquivalentTo(want))
		g.Expect(cur.Status.Counts.ConfigApplied).To(BeEquivalentTo(want))
	}, 3*time.Minute, time.Second).Should(Succeed())
	t.Logf("MEASURE %d collectors connected and applied in status after %v", want, time.Since(started).Round(time.Millisecond))

	b := browser(t)
	base := "http://" + op.ConsoleAddr().String()
	begin := time.Now()
	g.Expect(open(t, b, base+"/?namespace="+ns)).To(BeEquivalentTo(http.StatusOK))
	t.Logf("MEASURE Collectors page loaded in %v", time.Since(begin).Round(time.Millisecond))
	// Namespace Name Mode Ready Connected: nothing is desired (envtest schedules no pods), so no "/0".
	g.Expect(strings.Fields(text(t, b, `tbody tr`))[2:5]).To(Equal([]string{"DaemonSet", "True", fmt.Sprint(want)}))
	begin = time.Now()
	g.Expect(open(t, b, base+"/collectors/"+ns+"/nodes")).To(BeEquivalentTo(http.StatusOK))
	t.Logf("MEASURE ManagedCollector page loaded in %v", time.Since(begin).Round(time.Millisecond))
	agentRows, err := chromedpCount(b, `h2#agents + .scroll tbody tr`)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(agentRows).To(Equal(min(want, v1alpha1.MaxAgentsInStatus)))
	if want > v1alpha1.MaxAgentsInStatus {
		g.Expect(text(t, b, `p.note`)).To(ContainSubstring(fmt.Sprintf("%d of %d collectors listed", v1alpha1.MaxAgentsInStatus, want)))
	}
	screenshot(t, b, fmt.Sprintf("fleet-%d", want))
	begin = time.Now()
	g.Expect(open(t, b, base+"/collectors/"+ns+"/nodes/topology")).To(BeEquivalentTo(http.StatusOK))
	t.Logf("MEASURE Topology page loaded in %v", time.Since(begin).Round(time.Millisecond))
}
