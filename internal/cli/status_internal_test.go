package cli

import (
	"bytes"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
)

var now = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

func ago(d time.Duration) metav1.Time { return metav1.NewTime(now.Add(-d)) }

// nodeAgents is a DaemonSet ManagedCollector with two pods, one of them drifted, and throughput.
func nodeAgents() *v1alpha1.ManagedCollector {
	lastSeen := ago(4 * time.Second)
	return &v1alpha1.ManagedCollector{
		ObjectMeta: metav1.ObjectMeta{Name: "node-agents", Namespace: "observability", UID: "mc-uid", Generation: 3,
			CreationTimestamp: ago(3 * time.Hour)},
		Spec: v1alpha1.ManagedCollectorSpec{Mode: v1alpha1.ModeDaemonSet},
		Status: v1alpha1.ManagedCollectorStatus{
			ObservedGeneration: 3,
			ConfigHash:         "18af02aa1172aabbccdd",
			Connected:          "2/3",
			Counts:             v1alpha1.AgentCounts{Desired: 3, Connected: 2, Healthy: 2, ConfigApplied: 1, ConfigDrifted: 1},
			Conditions: []metav1.Condition{
				{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonConfigDrift,
					Message: "1 of 2 connected collectors report the config applied but do not run it; re-applying"},
				{Type: v1alpha1.ConditionConfigApplied, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonConfigDrift},
			},
			Agents: []v1alpha1.AgentStatus{
				{InstanceUID: "0190aaaa-0000-7000-8000-000000000001", HostName: "node-a", PodName: "node-agents-collector-x1",
					NodeName: "node-a", Connected: true, Healthy: true, LastSeen: &lastSeen, ConfigStatus: v1alpha1.ConfigStatusDrifted,
					Message: "the effective config lacks\nexporters::debug"},
				{InstanceUID: "0190aaaa-0000-7000-8000-000000000002", HostName: "node-b", PodName: "node-agents-collector-x2",
					NodeName: "node-b", Connected: true, Healthy: true, LastSeen: &lastSeen, ConfigStatus: v1alpha1.ConfigStatusApplied},
			},
			Throughput: &v1alpha1.ThroughputStatus{
				Spans:        &v1alpha1.SignalThroughput{Accepted: ptr.To(resource.MustParse("12500m"))},
				MetricPoints: &v1alpha1.SignalThroughput{Accepted: ptr.To(resource.MustParse("340"))},
			},
		},
	}
}

func TestStatusList(t *testing.T) {
	hosts := v1alpha1.ManagedCollector{
		ObjectMeta: metav1.ObjectMeta{Name: "linux-hosts", Namespace: "observability", CreationTimestamp: ago(90 * time.Second)},
		Spec:       v1alpha1.ManagedCollectorSpec{Mode: v1alpha1.ModeExternal},
		Status:     v1alpha1.ManagedCollectorStatus{Connected: "0/0"},
	}
	var b bytes.Buffer
	if err := printTable(&b, "", collectorColumns(now), []v1alpha1.ManagedCollector{hosts, *nodeAgents()}); err != nil {
		t.Fatal(err)
	}
	want := `NAME          MODE        READY    CONNECTED   APPLIED   HEALTHY   DRIFTED   THROUGHPUT                   AGE   REASON
linux-hosts   External    <none>   0/0         <none>    0/0       0         <none>                       90s   <none>
node-agents   DaemonSet   False    2/3         False     2/2       1         12.5 spans/s, 340 points/s   3h    ConfigDrift
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestStatusOfOneCollector(t *testing.T) {
	mc := nodeAgents()
	events := []eventsv1.Event{
		{ObjectMeta: metav1.ObjectMeta{Name: "b"}, EventTime: metav1.NewMicroTime(now.Add(-time.Minute)), Type: corev1.EventTypeWarning,
			Reason: v1alpha1.EventConfigDrift, Note: "Collector node-agents-collector-x1 runs a config that lacks exporters::debug",
			Regarding: corev1.ObjectReference{Kind: "ManagedCollector", Name: "node-agents", UID: "mc-uid"},
			Series:    &eventsv1.EventSeries{Count: 3, LastObservedTime: metav1.NewMicroTime(now.Add(-10 * time.Second))}},
		{ObjectMeta: metav1.ObjectMeta{Name: "a"}, EventTime: metav1.NewMicroTime(now.Add(-2 * time.Minute)), Type: corev1.EventTypeNormal,
			Reason: v1alpha1.EventRegistered, Note: "Collector node-agents-collector-x1 registered",
			Regarding: corev1.ObjectReference{Kind: "ManagedCollector", Name: "node-agents", UID: "mc-uid"}},
		// Another object's, and an earlier ManagedCollector of the same name's.
		{ObjectMeta: metav1.ObjectMeta{Name: "c"}, EventTime: metav1.NewMicroTime(now), Type: corev1.EventTypeNormal, Reason: "Redeemed",
			Regarding: corev1.ObjectReference{Kind: "EnrollmentToken", Name: "node-agents"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "d"}, EventTime: metav1.NewMicroTime(now), Type: corev1.EventTypeNormal, Reason: "Registered",
			Regarding: corev1.ObjectReference{Kind: "ManagedCollector", Name: "node-agents", UID: "old-uid"}},
	}
	var b bytes.Buffer
	if err := printCollector(&b, now, mc, events); err != nil {
		t.Fatal(err)
	}
	want := `Name:        node-agents
Namespace:   observability
Mode:        DaemonSet
Ready:       False (ConfigDrift): 1 of 2 connected collectors report the config applied but do not run it; re-applying
Connected:   2 of 3 desired; 2 healthy, 1 run the config, 0 failed it, 1 drifted
Config:      18af02aa1172
Throughput:  12.5 spans/s, 340 points/s

Collectors:
  HOST     POD                        NODE     CONNECTED   HEALTHY   LAST SEEN   CONFIG    INSTANCE                               MESSAGE
  node-a   node-agents-collector-x1   node-a   true        true      4s          Drifted   0190aaaa-0000-7000-8000-000000000001   the effective config lacks exporters::debug
  node-b   node-agents-collector-x2   node-b   true        true      4s          Applied   0190aaaa-0000-7000-8000-000000000002   <none>

Events:
  TYPE      REASON        AGE        MESSAGE
  Normal    Registered    2m         Collector node-agents-collector-x1 registered
  Warning   ConfigDrift   10s (x3)   Collector node-agents-collector-x1 runs a config that lacks exporters::debug
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}

	// A spec the operator has not caught up with says so.
	mc.Generation = 4
	b.Reset()
	if err := printCollector(&b, now, mc, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b.Bytes(), []byte("Note:        status is of generation 3, the spec is at 4: the operator is catching up\n")) ||
		!bytes.Contains(b.Bytes(), []byte("Events:\n  <none>\n")) {
		t.Errorf("got:\n%s", b.String())
	}

	// Nothing desired (a DaemonSet with no scheduled pods): no "of 0".
	mc.Status.Counts.Desired = 0
	b.Reset()
	if err := printCollector(&b, now, mc, nil); err != nil {
		t.Fatal(err)
	}
	if want := "Connected:   2 (none desired yet: no scheduled pods, no redeemed EnrollmentTokens); 2 healthy"; !bytes.Contains(b.Bytes(), []byte(want)) {
		t.Errorf("got:\n%s\nwant a line starting %q", b.String(), want)
	}
}

func TestTokenColumns(t *testing.T) {
	expires := ago(-14 * time.Minute)
	expired := ago(3 * time.Minute)
	redeemedAt := ago(time.Hour)
	tokens := []v1alpha1.EnrollmentToken{
		{ObjectMeta: metav1.ObjectMeta{Name: "fresh", CreationTimestamp: ago(time.Minute)},
			Spec:   v1alpha1.EnrollmentTokenSpec{CollectorRef: v1alpha1.CollectorReference{Name: "linux-hosts"}, Description: "web-02"},
			Status: v1alpha1.EnrollmentTokenStatus{Phase: v1alpha1.TokenPending, ExpiresAt: &expires}},
		{ObjectMeta: metav1.ObjectMeta{Name: "late", CreationTimestamp: ago(18 * time.Minute)},
			Spec:   v1alpha1.EnrollmentTokenSpec{CollectorRef: v1alpha1.CollectorReference{Name: "linux-hosts"}},
			Status: v1alpha1.EnrollmentTokenStatus{Phase: v1alpha1.TokenExpired, ExpiresAt: &expired}},
		{ObjectMeta: metav1.ObjectMeta{Name: "web-01", CreationTimestamp: ago(2 * time.Hour)},
			Spec: v1alpha1.EnrollmentTokenSpec{CollectorRef: v1alpha1.CollectorReference{Name: "linux-hosts"}},
			Status: v1alpha1.EnrollmentTokenStatus{Phase: v1alpha1.TokenRedeemed, ExpiresAt: &expired, RedeemedAt: &redeemedAt,
				RedeemedBy: &v1alpha1.RedeemedBy{InstanceUID: "0190aaaa-0000-7000-8000-00000000000a", HostName: "web-01.example.com"}}},
	}
	var b bytes.Buffer
	if err := printTable(&b, "", tokenColumns(now), tokens); err != nil {
		t.Fatal(err)
	}
	want := `NAME     COLLECTOR     PHASE      EXPIRES            HOST                 REDEEMED   AGE    DESCRIPTION
fresh    linux-hosts   Pending    in 14m             <none>               <none>     60s    web-02
late     linux-hosts   Expired    3m ago             <none>               <none>     18m    <none>
web-01   linux-hosts   Redeemed   never (redeemed)   web-01.example.com   60m ago    120m   <none>
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}
