package chart_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	dto "github.com/prometheus/client_model/go"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
	"github.com/linkmesh/linkmesh-operator/internal/operator"
	"github.com/linkmesh/linkmesh-operator/test/framework/ownmetrics"
	"github.com/linkmesh/linkmesh-operator/test/framework/simagent"
	"github.com/linkmesh/linkmesh-operator/test/framework/testenv"
)

// monitoring are the values that turn on the dashboard and the rules.
var monitoring = []string{"grafana.dashboards.enabled=true", "prometheusRule.enabled=true"}

const dashboardFile = "linkmesh-operator.json"

// TestMonitoringIsOptIn: neither the dashboard nor the rules are rendered unless asked for; each value turns
// on its own object only.
func TestMonitoringIsOptIn(t *testing.T) {
	defaults := render(t, defaultRender())
	if o := find(defaults, "ConfigMap", release+"-dashboards"); o != nil {
		t.Errorf("the defaults render %s", key(o))
	}
	if o := find(defaults, "PrometheusRule", release); o != nil {
		t.Errorf("the defaults render %s", key(o))
	}
	onlyDashboards := render(t, renderOpts{release: release, namespace: namespace, set: monitoring[:1]})
	mustFind(t, onlyDashboards, "ConfigMap", release+"-dashboards")
	if o := find(onlyDashboards, "PrometheusRule", release); o != nil {
		t.Errorf("grafana.dashboards.enabled alone renders %s", key(o))
	}
	onlyRules := render(t, renderOpts{release: release, namespace: namespace, set: monitoring[1:]})
	mustFind(t, onlyRules, "PrometheusRule", release)
	if o := find(onlyRules, "ConfigMap", release+"-dashboards"); o != nil {
		t.Errorf("prometheusRule.enabled alone renders %s", key(o))
	}
	o := renderOpts{release: release, namespace: namespace, set: []string{"prometheusRule.enabled=true", "metrics.enabled=false"}}
	if _, err := runHelm(t, o.args()...); err == nil || !strings.Contains(err.Error(), "prometheusRule.enabled needs metrics.enabled") {
		t.Errorf("rules without metrics: want a refusal naming metrics.enabled, got %v", err)
	}
}

// TestDashboardConfigMap: the sidecar finds the ConfigMap by its label, in the namespace it watches, and the
// dashboard in it is the chart's file, as JSON Grafana can load.
func TestDashboardConfigMap(t *testing.T) {
	objs := render(t, renderOpts{release: release, namespace: namespace, set: []string{
		"grafana.dashboards.enabled=true", "grafana.dashboards.namespace=monitoring", "grafana.dashboards.annotations.grafana_folder=LinkMesh",
	}})
	cm := &corev1.ConfigMap{}
	fromUnstructured(t, mustFind(t, objs, "ConfigMap", release+"-dashboards"), cm)
	if cm.Namespace != "monitoring" {
		t.Errorf("namespace %q, want monitoring", cm.Namespace)
	}
	if cm.Labels["grafana_dashboard"] != "1" {
		t.Errorf("labels %v lack grafana_dashboard: \"1\", which the sidecar looks for", cm.Labels)
	}
	if cm.Annotations["grafana_folder"] != "LinkMesh" {
		t.Errorf("annotations %v lack grafana_folder", cm.Annotations)
	}
	want, err := os.ReadFile(filepath.Join(chartDir, "dashboards", dashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	if got := cm.Data[dashboardFile]; got != strings.TrimRight(string(want), "\n") {
		t.Errorf("the ConfigMap's %s is not the chart's dashboards/%s", dashboardFile, dashboardFile)
	}
	var dash struct {
		UID    string `json:"uid"`
		Title  string `json:"title"`
		Panels []struct {
			Type  string `json:"type"`
			Title string `json:"title"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(cm.Data[dashboardFile]), &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	if dash.UID == "" || dash.Title == "" || len(dash.Panels) == 0 {
		t.Errorf("dashboard uid %q, title %q, %d panels: want all three", dash.UID, dash.Title, len(dash.Panels))
	}
	titles := map[string]bool{}
	for _, p := range dash.Panels {
		titles[p.Title] = true
	}
	// What the issue asks the dashboard to show.
	for _, want := range []string{
		"Collectors by state", "Items in per ManagedCollector", "Items out per ManagedCollector", "Failures per ManagedCollector",
		"Receivers", "Exporters", "Exporter queue fill", "OpAMP connections per replica", "Reconcile errors",
	} {
		if !titles[want] {
			t.Errorf("the dashboard has no panel %q", want)
		}
	}
}

// renderedRules is the PrometheusRule's spec as a Prometheus rule file.
func renderedRules(t *testing.T, valuesFiles ...string) []byte {
	t.Helper()
	objs := render(t, renderOpts{release: release, namespace: namespace, set: monitoring, valuesFiles: valuesFiles})
	rule := mustFind(t, objs, "PrometheusRule", release)
	spec, _, _ := unstructured.NestedMap(rule.Object, "spec")
	b, err := yaml.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRulesLoad: the rules load with Prometheus's own rule-file parser (unknown fields refused, every
// expression and annotation template checked), and the values land in them.
func TestRulesLoad(t *testing.T) {
	groups, errs := rulefmt.Parse(renderedRules(t), false, model.LegacyValidation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		t.Fatalf("Prometheus refuses the rules: %v", errs)
	}
	alerts := map[string]rulefmt.Rule{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			alerts[r.Alert] = r
		}
	}
	for _, want := range []string{
		"LinkMeshCollectorsMissing", "LinkMeshCollectorConfigFailed", "LinkMeshCollectorConfigDrifted",
		"LinkMeshCollectorExportFailures", "LinkMeshCollectorOwnMetricsMissing", "LinkMeshOperatorDown",
		"LinkMeshOperatorReconcileErrors",
	} {
		r, ok := alerts[want]
		if !ok {
			t.Errorf("no alert %s among %v", want, slices.Sorted(maps.Keys(alerts)))
			continue
		}
		if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
			t.Errorf("%s: want a severity, a summary and a description, got %v %v", want, r.Labels, r.Annotations)
		}
	}
	if got := alerts["LinkMeshCollectorsMissing"].For; time.Duration(got) != 10*time.Minute {
		t.Errorf("LinkMeshCollectorsMissing for %v, want the issue's 10m", got)
	}
	if !strings.Contains(alerts["LinkMeshOperatorDown"].Expr, `job="linkmesh-operator-metrics", namespace="linkmesh-system"`) {
		t.Errorf("LinkMeshOperatorDown does not select the ServiceMonitor's job: %s", alerts["LinkMeshOperatorDown"].Expr)
	}

	t.Run("values", func(t *testing.T) {
		// A values file: --set would pass 0.2 as a string, which the schema refuses.
		values := filepath.Join(t.TempDir(), "values.yaml")
		if err := os.WriteFile(values, []byte("prometheusRule:\n  exportFailureRatio: 0.2\n  for: {collectorsMissing: 30m}\n  additionalRuleLabels: {team: observability}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		groups, errs := rulefmt.Parse(renderedRules(t, values), false, model.LegacyValidation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		for _, g := range groups.Groups {
			for _, r := range g.Rules {
				if r.Labels["team"] != "observability" {
					t.Errorf("%s lacks the additional rule label: %v", r.Alert, r.Labels)
				}
				switch r.Alert {
				case "LinkMeshCollectorExportFailures":
					if !strings.HasSuffix(strings.TrimSpace(r.Expr), "> 0.2") {
						t.Errorf("exportFailureRatio=0.2 does not reach the expression: %s", r.Expr)
					}
				case "LinkMeshCollectorsMissing":
					if time.Duration(r.For) != 30*time.Minute {
						t.Errorf("for.collectorsMissing=30m gives for %v", r.For)
					}
				}
			}
		}
	})
	t.Run("a bad duration is refused", func(t *testing.T) {
		o := renderOpts{release: release, namespace: namespace, set: []string{"prometheusRule.enabled=true", "prometheusRule.for.operatorDown=five minutes"}}
		if _, err := runHelm(t, o.args()...); err == nil || !strings.Contains(err.Error(), "operatorDown") {
			t.Errorf("want values.schema.json to refuse the duration, got %v", err)
		}
	})
}

// query is one PromQL expression of the dashboard or the rules, and where it is.
type query struct{ where, expr string }

// grafanaMacros are Grafana's built-in variables that stand where PromQL needs a duration; Grafana replaces
// them before it sends the query. The dashboard's own variables ($job, $namespace, ...) stand only inside
// label matchers' strings, where PromQL takes any text.
var grafanaMacros = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")

// labelValues is Grafana's variable query label_values(selector, label).
var labelValues = regexp.MustCompile(`^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

// dashboardQueries are the expressions of every panel and variable of the dashboard; every panel has one.
func dashboardQueries(t *testing.T) []query {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartDir, "dashboards", dashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	var out []query
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			out = append(out, query{"panel " + p.Title, grafanaMacros.Replace(tg.Expr)})
		}
	}
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(map[string]any)
		s, _ := q["query"].(string)
		m := labelValues.FindStringSubmatch(s)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(selector, label)", v.Name, s)
			continue
		}
		out = append(out, query{"variable " + v.Name, m[1]})
	}
	return out
}

// ruleQueries are the expressions of every rule the chart renders.
func ruleQueries(t *testing.T) []query {
	t.Helper()
	var spec struct {
		Groups []struct {
			Rules []struct {
				Alert, Expr string
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(renderedRules(t), &spec); err != nil {
		t.Fatal(err)
	}
	var out []query
	for _, g := range spec.Groups {
		for _, r := range g.Rules {
			out = append(out, query{"alert " + r.Alert, r.Expr})
		}
	}
	return out
}

// prometheusSynthesized are series Prometheus itself writes for every target, not the operator.
var prometheusSynthesized = map[string]bool{"up": true}

// TestQueriesParseAndUseExportedMetrics: every expression of the dashboard and the rules parses with
// Prometheus's PromQL parser and reads only series that a running operator exports: the operator runs on the
// test control plane with a simulated collector that pushes its own metrics, its metrics endpoint is scraped,
// and every metric name the expressions select must be in the scrape. Every linkmesh_collector_* series the
// operator exports must also be on the dashboard.
func TestQueriesParseAndUseExportedMetrics(t *testing.T) {
	queries := append(dashboardQueries(t), ruleQueries(t)...)
	p := parser.NewParser(parser.Options{})
	used := map[string][]string{} // metric name -> where
	for _, q := range queries {
		expr, err := p.ParseExpr(q.expr)
		if err != nil {
			t.Errorf("%s: %q does not parse: %v", q.where, q.expr, err)
			continue
		}
		parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok {
				if vs.Name == "" {
					t.Errorf("%s: %s selects no metric name", q.where, vs)
				}
				used[vs.Name] = append(used[vs.Name], q.where)
			}
			return nil
		})
	}
	if len(used) == 0 {
		t.Fatal("no metric found in the dashboard and the rules")
	}

	installChart(t)
	metricsAddr := freeAddr(t)
	op, stop, err := testenv.RunOperator(env, operator.Options{MetricsAddr: metricsAddr, SkipControllerNameValidation: true})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	ns := testenv.Namespace(t, env.Client, "monitoring")
	ctx := context.Background()
	mc := &v1alpha1.ManagedCollector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "edge"},
		Spec:       v1alpha1.ManagedCollectorSpec{Mode: v1alpha1.ModeDaemonSet, Config: validConfig},
	}
	if err := env.Client.Create(ctx, mc); err != nil {
		t.Fatal(err)
	}
	sec := &corev1.Secret{}
	if err := poll(timeoutCtx(t, 30*time.Second), func(ctx context.Context) error {
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: naming.CredentialsSecret(mc.Name)}, sec); err != nil {
			return err
		}
		if len(sec.Data[naming.CollectorTokenKey]) == 0 {
			return fmt.Errorf("no collector token yet")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	agent := simagent.Start(t, op.ListenerAddr().String(), string(sec.Data[naming.CollectorTokenKey]), simagent.Options{Host: "node-a", OwnMetrics: true})
	defer agent.Stop()
	if err := poll(timeoutCtx(t, 30*time.Second), func(context.Context) error {
		if len(agent.OwnMetricsOffers()) == 0 {
			return fmt.Errorf("no own_metrics offer")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	dest := ownmetrics.FromOffer(agent.OwnMetricsOffers()[0])
	start := time.Now().Add(-3 * time.Minute).Truncate(time.Second)
	for i, n := range []int64{600, 1800} {
		if err := dest.Post(ownmetrics.Export{
			Instance: agent.UID.String(), Start: start, At: start.Add(time.Duration(i+1) * time.Minute),
			Receivers: []ownmetrics.Receiver{{Name: "otlp", Signal: ownmetrics.Spans, Accepted: n, Refused: 1}},
			Exporters: []ownmetrics.Exporter{{Name: "debug", Signal: ownmetrics.Spans, Sent: n, Failed: 2, QueueSize: 3, QueueCapacity: 1000}},
		}); err != nil {
			t.Fatal(err)
		}
	}

	var exported map[string]bool
	var families map[string]*dto.MetricFamily
	err = poll(timeoutCtx(t, 30*time.Second), func(ctx context.Context) error {
		families, err = scrape(ctx, "http://"+metricsAddr+"/metrics")
		if err != nil {
			return err
		}
		exported = seriesNames(families)
		var missing []string
		for _, name := range slices.Sorted(maps.Keys(used)) {
			if !exported[name] && !prometheusSynthesized[name] {
				missing = append(missing, fmt.Sprintf("%s (used by %s)", name, strings.Join(slices.Compact(used[name]), ", ")))
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("the operator exports no %s", strings.Join(missing, "; "))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	dashboard := map[string]bool{}
	for _, q := range dashboardQueries(t) {
		expr, _ := p.ParseExpr(q.expr)
		parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok {
				dashboard[vs.Name] = true
			}
			return nil
		})
	}
	linkmesh := 0
	for name := range families {
		if strings.HasPrefix(name, "linkmesh_") {
			linkmesh++
			if !dashboard[name] {
				t.Errorf("the operator exports %s, which no dashboard panel shows", name)
			}
		}
	}
	if linkmesh < 7 {
		t.Errorf("the scrape has %d linkmesh_* families, want the fleet's seven", linkmesh)
	}
}

// seriesNames are the series names a scrape holds: a histogram family is its _bucket, _sum and _count series, a
// summary its quantiles, _sum and _count.
func seriesNames(families map[string]*dto.MetricFamily) map[string]bool {
	out := map[string]bool{}
	for name, f := range families {
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			out[name+"_bucket"], out[name+"_sum"], out[name+"_count"] = true, true, true
		case dto.MetricType_SUMMARY:
			out[name], out[name+"_sum"], out[name+"_count"] = true, true, true
		default:
			out[name] = true
		}
	}
	return out
}

func scrape(ctx context.Context, url string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	tp := expfmt.NewTextParser(model.LegacyValidation)
	return tp.TextToMetricFamilies(resp.Body)
}

// freeAddr is a free 127.0.0.1 port for controller-runtime's metrics server, which does not report the port it
// bound.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

func timeoutCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestServiceMonitorHonorsLabels: the fleet's series carry the ManagedCollector's namespace; without
// honorLabels Prometheus would rename it exported_namespace and the dashboard's and rules' namespace would be
// the operator's.
func TestServiceMonitorHonorsLabels(t *testing.T) {
	sm := mustFind(t, render(t, renderOpts{release: release, namespace: namespace, set: []string{"metrics.serviceMonitor.enabled=true"}}),
		"ServiceMonitor", release)
	endpoints, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	if len(endpoints) != 1 || endpoints[0].(map[string]any)["honorLabels"] != true {
		t.Errorf("ServiceMonitor endpoints %v: want one with honorLabels: true", endpoints)
	}
}
