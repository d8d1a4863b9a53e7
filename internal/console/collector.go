package console

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
)

// MaxEvents bounds the Events of one ManagedCollector page: the newest.
const MaxEvents = 100

// collectorFields are the summary of a ManagedCollector's page.
var collectorFields = []field[*v1alpha1.ManagedCollector]{
	{"Mode", func(mc *v1alpha1.ManagedCollector, _ time.Time) cell { return cell{Text: string(modeOf(mc))} }},
	{"Ready", func(mc *v1alpha1.ManagedCollector, _ time.Time) cell {
		return conditionCell(mc.Status.Conditions, v1alpha1.ConditionReady, false)
	}},
	{"Connected", func(mc *v1alpha1.ManagedCollector, _ time.Time) cell { return connectedCell(mc.Status) }},
	{"Config applied", func(mc *v1alpha1.ManagedCollector, _ time.Time) cell {
		return countCell(mc.Status.Counts.ConfigApplied, false)
	}},
	{"Healthy", func(mc *v1alpha1.ManagedCollector, _ time.Time) cell {
		return countCell(mc.Status.Counts.Healthy, false)
	}},
	{"Config failed", func(mc *v1alpha1.ManagedCollector, _ time.Time) cell {
		return countCell(mc.Status.Counts.ConfigFailed, true)
	}},
	{"Drifted", func(mc *v1alpha1.ManagedCollector, _ time.Time) cell {
		return countCell(mc.Status.Counts.ConfigDrifted, true)
	}},
	{"Config hash", func(mc *v1alpha1.ManagedCollector, _ time.Time) cell {
		return cell{Text: shortHash(mc.Status.ConfigHash), Title: mc.Status.ConfigHash, Class: "mono"}
	}},
	{"Generation", func(mc *v1alpha1.ManagedCollector, _ time.Time) cell {
		c := cell{Text: fmt.Sprintf("%d (observed %d)", mc.Generation, mc.Status.ObservedGeneration)}
		if mc.Status.ObservedGeneration != mc.Generation {
			c.Class, c.Title = "warn", "the operator has not yet acted on the latest spec"
		}
		return c
	}},
	{"Throughput", func(mc *v1alpha1.ManagedCollector, now time.Time) cell {
		return throughputSummary(mc.Status.Throughput, now)
	}},
	{"Age", func(mc *v1alpha1.ManagedCollector, now time.Time) cell {
		return cell{Text: age(now, mc.CreationTimestamp.Time)}
	}},
}

// throughputSummary is the group's rates per signal in one line.
func throughputSummary(th *v1alpha1.ThroughputStatus, now time.Time) cell {
	if th == nil {
		return cell{Text: "no own metrics reported", Class: "muted"}
	}
	var parts []string
	for _, s := range []v1alpha1.TelemetrySignal{v1alpha1.SignalSpans, v1alpha1.SignalMetricPoints, v1alpha1.SignalLogRecords} {
		st := signalThroughput(th, s)
		if st == nil {
			continue
		}
		p := fmt.Sprintf("%s %s/s in, %s/s out", signalName(s), formatRate(rate(st.Accepted)), formatRate(rate(st.Sent)))
		if r := rate(st.Refused); r > 0 {
			p += fmt.Sprintf(", %s/s refused", formatRate(r))
		}
		if f := rate(st.Failed); f > 0 {
			p += fmt.Sprintf(", %s/s failed", formatRate(f))
		}
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		parts = append(parts, "no items")
	}
	c := cell{Text: strings.Join(parts, "; "), Title: fmt.Sprintf("%d collectors reporting", th.Reporting)}
	if th.LastUpdated != nil {
		c.Title += ", last own metrics " + age(now, th.LastUpdated.Time) + " ago"
	}
	return c
}

// agentRow is one entry of status.agents with what its cells compare against.
type agentRow struct {
	agent       *v1alpha1.AgentStatus
	desiredHash string
}

// agentColumns are the columns of a ManagedCollector's agents.
var agentColumns = []column[agentRow]{
	{"Host", func(r agentRow, _ time.Time) cell {
		return cell{Text: r.agent.HostName, Title: "instance " + r.agent.InstanceUID}
	}},
	{"Pod", func(r agentRow, _ time.Time) cell { return cell{Text: dash(r.agent.PodName)} }},
	{"Node", func(r agentRow, _ time.Time) cell { return cell{Text: dash(r.agent.NodeName)} }},
	{"Management", func(r agentRow, _ time.Time) cell {
		m := r.agent.ManagementMode
		if m == "" {
			m = v1alpha1.ManagementModeOpAMP
		}
		return cell{Text: m}
	}},
	{"Status", func(r agentRow, now time.Time) cell {
		seen := age(now, metav1Time(r.agent.LastSeen))
		if r.agent.Connected {
			return cell{Text: "Connected", Class: "ok", Title: "last seen " + seen + " ago"}
		}
		return cell{Text: "Disconnected", Class: "bad", Title: "last seen " + seen + " ago"}
	}},
	{"Last seen", func(r agentRow, now time.Time) cell {
		return cell{Text: age(now, metav1Time(r.agent.LastSeen)), Class: "muted"}
	}},
	{"Healthy", func(r agentRow, _ time.Time) cell {
		if r.agent.Healthy {
			return cell{Text: "Yes", Class: "ok"}
		}
		return cell{Text: "No", Class: "bad"}
	}},
	{"Config", func(r agentRow, _ time.Time) cell {
		c := cell{Text: shortHash(r.agent.ConfigHash), Title: r.agent.ConfigHash, Class: "mono"}
		if r.agent.ConfigHash != "" && r.agent.ConfigHash != r.desiredHash {
			c.Class, c.Title = "mono warn", r.agent.ConfigHash+" (not the current config)"
		}
		return c
	}},
	{"Config status", func(r agentRow, _ time.Time) cell {
		c := cell{Text: string(r.agent.ConfigStatus)}
		switch r.agent.ConfigStatus {
		case v1alpha1.ConfigStatusApplied:
			c.Class = "ok"
		case v1alpha1.ConfigStatusFailed, v1alpha1.ConfigStatusDrifted:
			c.Class = "bad"
		default:
			c.Class = "muted"
		}
		return c
	}},
	{"Message", func(r agentRow, _ time.Time) cell { return cell{Text: r.agent.Message, Class: "message"} }},
}

// conditionColumns show every condition status has, so new ones (Reconciling, Stalled, ...) appear by themselves.
var conditionColumns = []column[metav1.Condition]{
	{"Type", func(c metav1.Condition, _ time.Time) cell { return cell{Text: c.Type} }},
	{"Status", func(c metav1.Condition, _ time.Time) cell {
		// kstatus's abnormal-true conditions: Stalled=True needs a person, Reconciling=True is work in progress.
		out := conditionCell([]metav1.Condition{c}, c.Type, c.Type == "Stalled" || c.Type == "Reconciling")
		if c.Type == "Reconciling" && c.Status == metav1.ConditionTrue {
			out.Class = "warn"
		}
		return out
	}},
	{"Reason", func(c metav1.Condition, _ time.Time) cell { return cell{Text: c.Reason} }},
	{"Message", func(c metav1.Condition, _ time.Time) cell { return cell{Text: c.Message, Class: "message"} }},
	{"Since", func(c metav1.Condition, now time.Time) cell {
		return cell{Text: age(now, c.LastTransitionTime.Time), Class: "muted"}
	}},
}

// eventColumns show a ManagedCollector's Events like kubectl describe.
var eventColumns = []column[*eventsv1.Event]{
	{"Type", func(e *eventsv1.Event, _ time.Time) cell {
		if e.Type == corev1.EventTypeWarning {
			return cell{Text: e.Type, Class: "bad"}
		}
		return cell{Text: e.Type, Class: "muted"}
	}},
	{"Reason", func(e *eventsv1.Event, _ time.Time) cell { return cell{Text: e.Reason} }},
	{"Last seen", func(e *eventsv1.Event, now time.Time) cell { return cell{Text: age(now, eventTime(e)), Class: "muted"} }},
	{"Count", func(e *eventsv1.Event, _ time.Time) cell {
		n := int32(1)
		if e.Series != nil {
			n = e.Series.Count
		} else if e.DeprecatedCount > 0 {
			n = e.DeprecatedCount
		}
		return cell{Text: strconv.Itoa(int(n)), Class: "num"}
	}},
	{"From", func(e *eventsv1.Event, _ time.Time) cell { return cell{Text: e.ReportingController, Class: "muted"} }},
	{"Message", func(e *eventsv1.Event, _ time.Time) cell { return cell{Text: e.Note, Class: "message"} }},
}

// eventTime is when an Event last happened.
func eventTime(e *eventsv1.Event) time.Time {
	switch {
	case e.Series != nil && !e.Series.LastObservedTime.IsZero():
		return e.Series.LastObservedTime.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	case !e.DeprecatedLastTimestamp.IsZero():
		return e.DeprecatedLastTimestamp.Time
	default:
		return e.CreationTimestamp.Time
	}
}

// tokenView is one EnrollmentToken of a ManagedCollector. For a Pending token, Install is the one-line command
// with <TOKEN> where the token goes, and ReadToken how to get it from its Secret: the console never reads it.
type tokenView struct {
	Name, Description string
	Phase             cell
	Expires           string
	RedeemedBy        string
	Install           string
	ReadToken         string
}

func buildTokens(tokens []*v1alpha1.EnrollmentToken, now time.Time) []tokenView {
	out := make([]tokenView, 0, len(tokens))
	for _, et := range tokens {
		v := tokenView{Name: et.Name, Description: et.Spec.Description, Phase: cell{Text: dash(string(et.Status.Phase))}}
		switch et.Status.Phase {
		case v1alpha1.TokenPending:
			v.Phase.Class = "warn"
			v.Expires = until(now, metav1Time(et.Status.ExpiresAt))
			v.Install = et.Status.InstallCommand
			if et.Status.SecretName != "" {
				v.ReadToken = fmt.Sprintf("kubectl get secret -n %s %s -o jsonpath='{.data.%s}' | base64 -d", et.Namespace, et.Status.SecretName, v1alpha1.TokenSecretKey)
			}
		case v1alpha1.TokenRedeemed:
			v.Phase.Class = "ok"
		default:
			v.Phase.Class = "muted"
		}
		if rb := et.Status.RedeemedBy; rb != nil {
			v.RedeemedBy = rb.HostName
			if v.RedeemedBy == "" {
				v.RedeemedBy = rb.InstanceUID
			}
			if at := metav1Time(et.Status.RedeemedAt); !at.IsZero() {
				v.RedeemedBy += " (" + age(now, at) + " ago)"
			}
		}
		out = append(out, v)
	}
	return out
}

// collectorPage is what one ManagedCollector's page shows. A section the viewer may not read (RBAC) says so
// in its Hidden text instead of showing anything.
type collectorPage struct {
	Namespace, Name string
	Fields          []fieldValue
	Agents          table
	AgentsNote      string
	Conditions      table
	Events          table
	EventsHidden    string
	EventsNote      string
	Tokens          []tokenView
	TokensHidden    string
}

// collectorSections is what a viewer may see beside the ManagedCollector itself; nil means not allowed.
type collectorSections struct {
	events []*eventsv1.Event
	tokens []*v1alpha1.EnrollmentToken
	// eventsAllowed and tokensAllowed are the viewer's RBAC on them.
	eventsAllowed, tokensAllowed bool
}

func buildCollectorPage(mc *v1alpha1.ManagedCollector, sec collectorSections, now time.Time) collectorPage {
	p := collectorPage{Namespace: mc.Namespace, Name: mc.Name, Fields: buildFields(collectorFields, mc, now)}
	rows := make([]agentRow, 0, len(mc.Status.Agents))
	for i := range mc.Status.Agents {
		rows = append(rows, agentRow{agent: &mc.Status.Agents[i], desiredHash: mc.Status.ConfigHash})
	}
	p.Agents = buildTable(agentColumns, rows, now)
	if known := int(max(mc.Status.Counts.Connected, mc.Status.Counts.Desired)); known > len(rows) {
		p.AgentsNote = fmt.Sprintf("%d of %d collectors listed: status keeps at most %d, failing and unhealthy first, then the most recently seen.",
			len(rows), known, v1alpha1.MaxAgentsInStatus)
	}
	p.Conditions = buildTable(conditionColumns, mc.Status.Conditions, now)
	if sec.eventsAllowed {
		events := slices.Clone(sec.events)
		slices.SortStableFunc(events, func(a, b *eventsv1.Event) int { return eventTime(b).Compare(eventTime(a)) })
		if len(events) > MaxEvents {
			p.EventsNote = fmt.Sprintf("The newest %d of %d events.", MaxEvents, len(events))
			events = events[:MaxEvents]
		}
		p.Events = buildTable(eventColumns, events, now)
	} else {
		p.EventsHidden = "You may not list events in namespace " + mc.Namespace + "."
	}
	if sec.tokensAllowed {
		p.Tokens = buildTokens(sec.tokens, now)
	} else {
		p.TokensHidden = "You may not list EnrollmentTokens in namespace " + mc.Namespace + "."
	}
	return p
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// topologyPage is what the Topology page of a ManagedCollector shows.
type topologyPage struct {
	Namespace, Name string
	SVG             string
	Error           string
	Throughput      cell
}

func buildTopologyPage(mc *v1alpha1.ManagedCollector, now time.Time) topologyPage {
	p := topologyPage{Namespace: mc.Namespace, Name: mc.Name, Throughput: throughputSummary(mc.Status.Throughput, now)}
	svg, err := RenderTopology(mc.Spec.Config, mc.Status.Throughput)
	if err != nil {
		p.Error = "The config cannot be drawn: " + err.Error()
	}
	p.SVG = svg
	return p
}
