package console

import (
	"fmt"
	"strings"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
)

var now = time.Date(2026, 5, 4, 12, 0, 0, 0, time.UTC)

func ago(d time.Duration) metav1.Time { return metav1.NewTime(now.Add(-d)) }

func sampleCollector() *v1alpha1.ManagedCollector {
	seen := ago(7 * time.Second)
	return &v1alpha1.ManagedCollector{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "nodes", UID: "u1", Generation: 3, CreationTimestamp: ago(49 * time.Hour)},
		Spec:       v1alpha1.ManagedCollectorSpec{Mode: v1alpha1.ModeDaemonSet, Config: fanOutConfig},
		Status: v1alpha1.ManagedCollectorStatus{
			ObservedGeneration: 3,
			ConfigHash:         "18af02aa1172aabbccddeeff",
			Counts:             v1alpha1.AgentCounts{Desired: 3, Connected: 2, Healthy: 1, ConfigApplied: 1, ConfigFailed: 1},
			Connected:          "2/3",
			Conditions: []metav1.Condition{
				{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonAgentsMissing, Message: "2 of 3 connected", LastTransitionTime: ago(5 * time.Minute)},
				{Type: v1alpha1.ConditionConfigApplied, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonConfigFailed, Message: "1 failed", LastTransitionTime: ago(5 * time.Minute)},
			},
			Agents: []v1alpha1.AgentStatus{
				{InstanceUID: "019a-1", HostName: "node-1", PodName: "nodes-collector-x1", NodeName: "node-1", ManagementMode: "OpAMP", Connected: true, LastSeen: &seen,
					Healthy: false, ConfigHash: "18af02aa1172aabbccddeeff", ConfigStatus: v1alpha1.ConfigStatusFailed, Message: `invalid keys: "exporters::otlp_http/backend::endpointt" <script>`},
				{InstanceUID: "019a-2", HostName: "node-2", PodName: "nodes-collector-x2", NodeName: "node-2", ManagementMode: "OpAMP", Connected: true, LastSeen: &seen,
					Healthy: true, ConfigHash: "0000old", ConfigStatus: v1alpha1.ConfigStatusApplied},
			},
			Throughput: fanOutThroughput(),
		},
	}
}

func TestCollectorPageGolden(t *testing.T) {
	mc := sampleCollector()
	expires := metav1.NewTime(now.Add(40 * time.Minute))
	redeemedAt := ago(2 * time.Hour)
	sec := collectorSections{
		eventsAllowed: true, tokensAllowed: true,
		events: []*eventsv1.Event{
			{Type: "Normal", Reason: v1alpha1.EventRegistered, Note: "Collector node-1 registered", EventTime: metav1.NewMicroTime(now.Add(-time.Hour)), ReportingController: "linkmesh-operator"},
			{Type: "Warning", Reason: v1alpha1.EventConfigFailed, Note: "node-1 failed to apply 18af02aa1172", EventTime: metav1.NewMicroTime(now.Add(-time.Minute)),
				Series: &eventsv1.EventSeries{Count: 4, LastObservedTime: metav1.NewMicroTime(now.Add(-30 * time.Second))}},
		},
		tokens: []*v1alpha1.EnrollmentToken{
			{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "web-01"}, Spec: v1alpha1.EnrollmentTokenSpec{Description: "web-01.example.com"},
				Status: v1alpha1.EnrollmentTokenStatus{Phase: v1alpha1.TokenPending, SecretName: "web-01-enrollment-token", ExpiresAt: &expires,
					InstallCommand: "curl -fsSL http://op:4320/api/v1/downloads/install-opamp.sh | sudo sh -s -- --token <TOKEN>"}},
			{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "db-01"},
				Status: v1alpha1.EnrollmentTokenStatus{Phase: v1alpha1.TokenRedeemed, RedeemedBy: &v1alpha1.RedeemedBy{InstanceUID: "019b", HostName: "db-01"}, RedeemedAt: &redeemedAt}},
		},
	}
	b, err := renderPage("collector", layout{Title: "team-a/nodes", Crumbs: crumbs(mc), Updates: updatesOf(mc), Rendered: now.Format(time.RFC3339), Body: buildCollectorPage(mc, sec, now)})
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	golden(t, "collector.html", page)
	for _, want := range []string{
		`<span class="num bad" title="1 of 3 collectors are not connected">2/3</span>`,
		`&lt;script&gt;`, // the agent's message, escaped
		`>Warning<`,      // the newest event first:
		`sudo sh -s -- --token &lt;TOKEN&gt;`,
		`kubectl get secret -n team-a web-01-enrollment-token -o jsonpath=&#39;{.data.token}&#39; | base64 -d`,
		`db-01 (2h ago)`,
		`<span class="mono warn" title="0000old (not the current config)">0000old</span>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if strings.Index(page, "ConfigFailed") > strings.Index(page, "Collector node-1 registered") {
		t.Error("events are not newest first")
	}
}

func TestCollectorsPaging(t *testing.T) {
	var mcs []*v1alpha1.ManagedCollector
	for i := range 250 {
		mc := sampleCollector()
		mc.Name = fmt.Sprintf("c-%03d", i)
		mcs = append(mcs, mc)
	}
	p := buildCollectorsPage(mcs, []string{"team-a"}, "team-a", 3, now)
	if p.From != 201 || p.To != 250 || p.Total != 250 || len(p.Table.Rows) != 50 {
		t.Errorf("page 3: %d-%d of %d with %d rows, want 201-250 of 250 with 50", p.From, p.To, p.Total, len(p.Table.Rows))
	}
	if p.Prev != "/?namespace=team-a&page=2" || p.Next != "" {
		t.Errorf("prev %q next %q", p.Prev, p.Next)
	}
	if got := p.Table.Rows[0][1].Text; got != "c-200" {
		t.Errorf("first row of page 3 is %s", got)
	}
	// The summary covers the whole fleet, not the page.
	if p.Summary[0].Value.Text != "250" || p.Summary[2].Value.Text != "500/750" {
		t.Errorf("summary %+v", p.Summary)
	}
	if p := buildCollectorsPage(mcs, nil, "", 99, now); p.From != 201 {
		t.Errorf("a page past the end shows %d-%d, want the last page", p.From, p.To)
	}
	b, err := renderPage("collectors", layout{Title: "Collectors", Body: buildCollectorsPage(mcs[:2], []string{"team-a", "team-b"}, "", 1, now)})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "collectors.html", string(b))
}

// BenchmarkCollectorsPage builds and renders the first page of 10,000 ManagedCollectors, what every view of
// the Collectors page does after reading the cache.
func BenchmarkCollectorsPage(b *testing.B) {
	var mcs []*v1alpha1.ManagedCollector
	for i := range 10000 {
		mc := sampleCollector()
		mc.Namespace, mc.Name = fmt.Sprintf("ns-%03d", i%300), fmt.Sprintf("c-%05d", i)
		mcs = append(mcs, mc)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := renderPage("collectors", layout{Body: buildCollectorsPage(mcs, nil, "", 1, now)}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestNewConditionsShowByThemselves: conditions the page does not know (kstatus's Reconciling and Stalled,
// which the API is getting) appear with their meaning: Stalled=True is bad, Reconciling=True in progress.
func TestNewConditionsShowByThemselves(t *testing.T) {
	mc := sampleCollector()
	mc.Status.Conditions = append(mc.Status.Conditions,
		metav1.Condition{Type: "Reconciling", Status: metav1.ConditionTrue, Reason: "RollingOut"},
		metav1.Condition{Type: "Stalled", Status: metav1.ConditionTrue, Reason: "ConfigRejected"})
	p := buildCollectorPage(mc, collectorSections{}, now)
	classes := map[string]string{}
	for _, row := range p.Conditions.Rows {
		classes[row[0].Text] = row[1].Class
	}
	for typ, want := range map[string]string{"Ready": "bad", "Reconciling": "warn", "Stalled": "bad"} {
		if classes[typ] != want {
			t.Errorf("%s shows as %q, want %q", typ, classes[typ], want)
		}
	}
}
