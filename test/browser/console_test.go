//go:build browser

package browser_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
	"github.com/linkmesh/linkmesh-operator/internal/operator"
	"github.com/linkmesh/linkmesh-operator/test/framework/ownmetrics"
	"github.com/linkmesh/linkmesh-operator/test/framework/simagent"
	"github.com/linkmesh/linkmesh-operator/test/framework/testenv"
)

const (
	timeout  = 30 * time.Second
	interval = 200 * time.Millisecond
)

const config = `receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 0.0.0.0:4317
processors:
  batch: {}
exporters:
  debug: {}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [debug]
`

// changedConfig adds an exporter, which the Topology page must show without a reload.
const changedConfig = `receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 0.0.0.0:4317
processors:
  batch: {}
exporters:
  debug: {}
  otlp_http/backup:
    endpoint: http://127.0.0.1:4318
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [debug, otlp_http/backup]
`

// browser starts a fresh headless chromium; the context is closed when the test ends.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := os.Getenv("CHROMIUM")
	if path == "" {
		var err error
		if path, err = exec.LookPath("chromium"); err != nil {
			t.Fatal("no chromium: apt-get install chromium, or set CHROMIUM")
		}
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// withToken makes every request of the browser carry the bearer token, as an authenticating proxy would.
func withToken(t *testing.T, ctx context.Context, token string) {
	t.Helper()
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": "Bearer " + token}}); err != nil {
		t.Fatal(err)
	}
}

// open navigates and returns the HTTP status of the page.
func open(t *testing.T, ctx context.Context, url string) int64 {
	t.Helper()
	resp, err := chromedp.RunResponse(ctx, chromedp.Navigate(url))
	if err != nil {
		t.Fatalf("opening %s: %v", url, err)
	}
	return resp.Status
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("reading %s: %v", sel, err)
	}
	return s
}

// chromedpCount is how many elements match the CSS selector.
func chromedpCount(ctx context.Context, sel string) (int, error) {
	return chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf("document.querySelectorAll(%q).length", sel)))
}

// svgText is the text of an SVG element, which has no innerText.
func svgText(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("reading %s: %v", sel, err)
	}
	return s
}

func html(t *testing.T, ctx context.Context) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// screenshot keeps a PNG of the page in $CONSOLE_SCREENSHOTS, when set.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("CONSOLE_SCREENSHOTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// viewer creates a ServiceAccount and returns its token; clusterWide binds rules in every namespace,
// otherwise in ns only.
func viewer(t *testing.T, ns, name string, clusterWide bool, rules ...rbacv1.PolicyRule) string {
	t.Helper()
	g := NewWithT(t)
	ctx := context.Background()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	g.Expect(env.Client.Create(ctx, sa)).To(Succeed())
	subject := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}}
	if clusterWide {
		g.Expect(env.Client.Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: ns + "-" + name}, Rules: rules})).To(Succeed())
		g.Expect(env.Client.Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: ns + "-" + name},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: ns + "-" + name}, Subjects: subject})).To(Succeed())
	} else {
		g.Expect(env.Client.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Rules: rules})).To(Succeed())
		g.Expect(env.Client.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name}, Subjects: subject})).To(Succeed())
	}
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}
	g.Expect(env.Client.SubResource("token").Create(ctx, sa, tr)).To(Succeed())
	return tr.Status.Token
}

var (
	readCollectors = rbacv1.PolicyRule{APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"managedcollectors", "enrollmenttokens"}, Verbs: []string{"get", "list"}}
	readEvents     = rbacv1.PolicyRule{APIGroups: []string{"events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"list"}}
)

// fleet is a DaemonSet ManagedCollector with simulated collectors (playing its pods; envtest schedules none)
// that report own metrics.
func fleet(t *testing.T, op *operator.Operator, ns, name string, hosts ...string) {
	t.Helper()
	g := NewWithT(t)
	ctx := context.Background()
	mc := &v1alpha1.ManagedCollector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.ManagedCollectorSpec{Mode: v1alpha1.ModeDaemonSet, Config: config},
	}
	g.Expect(env.Client.Create(ctx, mc)).To(Succeed())
	sec := &corev1.Secret{}
	g.Eventually(func(g Gomega) {
		g.Expect(env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: naming.CredentialsSecret(name)}, sec)).To(Succeed())
		g.Expect(sec.Data[naming.CollectorTokenKey]).NotTo(BeEmpty())
	}, timeout, interval).Should(Succeed())
	start := time.Now().Add(-3 * time.Minute).Truncate(time.Second)
	for i, host := range hosts {
		a := simagent.Start(t, op.ListenerAddr().String(), string(sec.Data[naming.CollectorTokenKey]), simagent.Options{Host: host, OwnMetrics: true})
		g.Eventually(a.OwnMetricsOffers, timeout, interval).ShouldNot(BeEmpty())
		dest := ownmetrics.FromOffer(a.OwnMetricsOffers()[0])
		// 10*(i+1) spans/s in, the same out, i failed per second.
		for j, n := range []int64{0, int64(600 * (i + 1))} {
			g.Expect(dest.Post(ownmetrics.Export{
				Instance: a.UID.String(), Start: start, At: start.Add(time.Duration(j+1) * time.Minute),
				Receivers: []ownmetrics.Receiver{{Name: "otlp", Signal: ownmetrics.Spans, Accepted: n}},
				Exporters: []ownmetrics.Exporter{{Name: "debug", Signal: ownmetrics.Spans, Sent: n, Failed: int64(60 * i * j), QueueSize: 1, QueueCapacity: 100}},
			})).To(Succeed())
		}
	}
	g.Eventually(func(g Gomega) {
		mc := status(g, ns, name)
		g.Expect(mc.Status.Counts.Connected).To(BeEquivalentTo(len(hosts)))
		g.Expect(mc.Status.Throughput).NotTo(BeNil())
		g.Expect(mc.Status.Throughput.Reporting).To(BeEquivalentTo(len(hosts)))
	}, timeout, interval).Should(Succeed())
}

func status(g Gomega, ns, name string) *v1alpha1.ManagedCollector {
	mc := &v1alpha1.ManagedCollector{}
	g.Expect(env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, mc)).To(Succeed())
	return mc
}

// TestConsole walks the pages as a person would.
func TestConsole(t *testing.T) {
	op, stop, err := testenv.RunOperator(env, operator.Options{ConsoleBindAddress: "127.0.0.1:0", ConsoleRequireToken: true})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	base := "http://" + op.ConsoleAddr().String()
	ctx := context.Background()
	teamA := testenv.Namespace(t, env.Client, "team-a")
	teamB := testenv.Namespace(t, env.Client, "team-b")
	fleet(t, op, teamA, "web", "web-01", "web-02", "web-03")
	fleet(t, op, teamB, "secret-project", "hidden-01")
	et := &v1alpha1.EnrollmentToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: teamA, Name: "web-04"},
		Spec:       v1alpha1.EnrollmentTokenSpec{CollectorRef: v1alpha1.CollectorReference{Name: "web"}, Description: "web-04.example.com"},
	}
	g := NewWithT(t)
	g.Expect(env.Client.Create(ctx, et)).To(Succeed())
	var tokenValue string
	g.Eventually(func(g Gomega) {
		g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(et), et)).To(Succeed())
		g.Expect(et.Status.Phase).To(Equal(v1alpha1.TokenPending))
		g.Expect(et.Status.InstallCommand).NotTo(BeEmpty())
		sec := &corev1.Secret{}
		g.Expect(env.Client.Get(ctx, types.NamespacedName{Namespace: teamA, Name: et.Status.SecretName}, sec)).To(Succeed())
		tokenValue = string(sec.Data[v1alpha1.TokenSecretKey])
		g.Expect(tokenValue).NotTo(BeEmpty())
	}, timeout, interval).Should(Succeed())
	ops := viewer(t, teamA, "ops", true, readCollectors, readEvents)
	limited := viewer(t, teamA, "limited", false, readCollectors)

	t.Run("no token gets 401", func(t *testing.T) {
		b := browser(t)
		if code := open(t, b, base+"/"); code != http.StatusUnauthorized {
			t.Errorf("status %d, want 401", code)
		}
		page := html(t, b)
		if strings.Contains(page, "web-01") || strings.Contains(page, teamA) {
			t.Error("the 401 page shows the fleet")
		}
		withToken(t, b, "not-a-token")
		if code := open(t, b, base+"/collectors/"+teamA+"/web"); code != http.StatusUnauthorized {
			t.Errorf("with a token the API server does not know: status %d, want 401", code)
		}
	})

	b := browser(t)
	withToken(t, b, ops)

	t.Run("the Collectors page shows what status says", func(t *testing.T) {
		g := NewWithT(t)
		if code := open(t, b, base+"/"); code != http.StatusOK {
			t.Fatalf("status %d", code)
		}
		mc := status(g, teamA, "web")
		row := text(t, b, fmt.Sprintf(`tr:has(a[href="/collectors/%s/web"])`, teamA))
		cells := strings.Fields(row)
		// Namespace Name Mode Ready Connected Applied Healthy Failed Drifted In Out Age
		g.Expect(cells[:9]).To(Equal([]string{teamA, "web", "DaemonSet", "True",
			mc.Status.Connected,
			fmt.Sprint(mc.Status.Counts.ConfigApplied), fmt.Sprint(mc.Status.Counts.Healthy), "0", "0"}))
		th := mc.Status.Throughput
		g.Expect(cells[9]).To(Equal(trim(th.Spans.Accepted.AsApproximateFloat64())), "items in")
		g.Expect(cells[10]).To(Equal(trim(th.Spans.Sent.AsApproximateFloat64())), "items out")
		g.Expect(html(t, b)).To(ContainSubstring("secret-project"), "a cluster-wide viewer sees team-b too")
		screenshot(t, b, "collectors")
	})

	t.Run("a ManagedCollector's page", func(t *testing.T) {
		g := NewWithT(t)
		open(t, b, base+"/collectors/"+teamA+"/web")
		agents := text(t, b, `h2#agents + .scroll tbody`)
		for _, h := range []string{"web-01", "web-02", "web-03"} {
			g.Expect(agents).To(ContainSubstring(h))
		}
		g.Expect(agents).To(ContainSubstring("OpAMP"))
		g.Expect(agents).To(ContainSubstring("Connected"))
		g.Expect(text(t, b, `h2#events + .scroll tbody`)).To(ContainSubstring(v1alpha1.EventRegistered))
		tokens := text(t, b, `h2#tokens + .scroll`)
		g.Expect(tokens).To(ContainSubstring("web-04"))
		g.Expect(tokens).To(ContainSubstring("Pending"))
		g.Expect(tokens).To(ContainSubstring("--token <TOKEN>"))
		g.Expect(html(t, b)).NotTo(ContainSubstring(tokenValue), "the page shows the EnrollmentToken's token")
		screenshot(t, b, "collector")
	})

	t.Run("the topology shows the pipeline and a config change without a reload", func(t *testing.T) {
		g := NewWithT(t)
		open(t, b, base+"/collectors/"+teamA+"/web/topology")
		for _, c := range []string{"receiver/otlp", "processor/batch", "exporter/debug"} {
			g.Expect(svgText(t, b, fmt.Sprintf(`g[data-component=%q]`, c))).NotTo(BeEmpty(), c)
		}
		mc := status(g, teamA, "web")
		g.Expect(svgText(t, b, `g[data-component="receiver/otlp"] .stat`)).To(HavePrefix(trim(mc.Status.Throughput.Spans.Accepted.AsApproximateFloat64()) + "/s"))
		screenshot(t, b, "topology")

		_, err := chromedp.Run(b, chromedp.Evaluate[bool](`window.__notReloaded = true`))
		g.Expect(err).NotTo(HaveOccurred())
		mc.Spec.Config = changedConfig
		g.Expect(env.Client.Update(context.Background(), mc)).To(Succeed())
		g.Eventually(func() int {
			n, _ := chromedp.Run(b, chromedp.Evaluate[int](`document.querySelectorAll('g[data-component="exporter/otlp_http/backup"]').length`))
			return n
		}, timeout, interval).Should(Equal(1), "the new exporter never appeared")
		still, err := chromedp.Run(b, chromedp.Evaluate[bool](`window.__notReloaded === true`))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(still).To(BeTrue(), "the page reloaded instead of updating itself")
		screenshot(t, b, "topology-changed")
	})

	t.Run("a narrow window", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(chromedp.Do(b, chromedp.EmulateViewport(390, 844))).To(Succeed())
		open(t, b, base+"/collectors/"+teamA+"/web")
		// The page itself never scrolls sideways; wide tables scroll in their own box.
		overflow, err := chromedp.Run(b, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth + 1`))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(overflow).To(BeFalse(), "the page is wider than a phone")
		screenshot(t, b, "collector-narrow")
		g.Expect(chromedp.Do(b, chromedp.EmulateViewport(1280, 900))).To(Succeed())
	})

	t.Run("a viewer without RBAC on a namespace sees nothing of it", func(t *testing.T) {
		g := NewWithT(t)
		lb := browser(t)
		withToken(t, lb, limited)
		g.Expect(open(t, lb, base+"/")).To(BeEquivalentTo(http.StatusOK))
		page := html(t, lb)
		g.Expect(page).To(ContainSubstring(`/collectors/` + teamA + `/web`))
		g.Expect(page).NotTo(ContainSubstring(teamB))
		g.Expect(page).NotTo(ContainSubstring("secret-project"))
		g.Expect(open(t, lb, base+"/collectors/"+teamB+"/secret-project")).To(BeEquivalentTo(http.StatusForbidden))
		page = html(t, lb)
		g.Expect(page).NotTo(ContainSubstring("hidden-01"))
		g.Expect(open(t, lb, base+"/collectors/"+teamA+"/web")).To(BeEquivalentTo(http.StatusOK))
		g.Expect(html(t, lb)).To(ContainSubstring("You may not list events in namespace " + teamA))
		screenshot(t, lb, "limited")
	})
}

// trim is the console's rendering of a rate below 1000 items per second.
func trim(v float64) string {
	s := fmt.Sprintf("%.3g", v)
	if strings.ContainsAny(s, "e") {
		return fmt.Sprint(v)
	}
	return s
}
