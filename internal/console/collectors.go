package console

import (
	"fmt"
	"net/url"
	"strconv"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
)

// PageSize is how many ManagedCollectors the Collectors page shows at once; larger fleets are paged
// (?page=N), in namespace/name order, and the summary above the table covers all of them.
const PageSize = 100

// collectorColumns are the Collectors page's columns.
var collectorColumns = []column[*v1alpha1.ManagedCollector]{
	{"Namespace", func(mc *v1alpha1.ManagedCollector, _ time.Time) cell {
		return cell{Text: mc.Namespace, Href: "/?namespace=" + url.QueryEscape(mc.Namespace)}
	}},
	{"Name", func(mc *v1alpha1.ManagedCollector, _ time.Time) cell {
		return cell{Text: mc.Name, Href: collectorPath(mc.Namespace, mc.Name)}
	}},
	{"Mode", func(mc *v1alpha1.ManagedCollector, _ time.Time) cell { return cell{Text: string(modeOf(mc))} }},
	{"Ready", func(mc *v1alpha1.ManagedCollector, _ time.Time) cell {
		return conditionCell(mc.Status.Conditions, v1alpha1.ConditionReady, false)
	}},
	{"Connected", func(mc *v1alpha1.ManagedCollector, _ time.Time) cell { return connectedCell(mc.Status) }},
	{"Applied", func(mc *v1alpha1.ManagedCollector, _ time.Time) cell {
		return countCell(mc.Status.Counts.ConfigApplied, false)
	}},
	{"Healthy", func(mc *v1alpha1.ManagedCollector, _ time.Time) cell {
		return countCell(mc.Status.Counts.Healthy, false)
	}},
	{"Failed", func(mc *v1alpha1.ManagedCollector, _ time.Time) cell {
		return countCell(mc.Status.Counts.ConfigFailed, true)
	}},
	{"Drifted", func(mc *v1alpha1.ManagedCollector, _ time.Time) cell {
		return countCell(mc.Status.Counts.ConfigDrifted, true)
	}},
	{"In /s", func(mc *v1alpha1.ManagedCollector, _ time.Time) cell {
		return throughputCell(mc.Status.Throughput, true)
	}},
	{"Out /s", func(mc *v1alpha1.ManagedCollector, _ time.Time) cell {
		return throughputCell(mc.Status.Throughput, false)
	}},
	{"Age", func(mc *v1alpha1.ManagedCollector, now time.Time) cell {
		return cell{Text: age(now, mc.CreationTimestamp.Time), Class: "muted"}
	}},
}

func modeOf(mc *v1alpha1.ManagedCollector) v1alpha1.CollectorMode {
	if mc.Spec.Mode == "" {
		return v1alpha1.ModeDaemonSet
	}
	return mc.Spec.Mode
}

// connectedCell is what kubectl's Connected column shows (status.connected: connected/desired, or only the
// connected count while nothing is desired, which a "1/0" would misstate), bad while collectors are missing.
func connectedCell(s v1alpha1.ManagedCollectorStatus) cell {
	c := s.Counts
	out := cell{Text: s.Connected, Class: "num"}
	if out.Text == "" { // no status yet
		out.Text = fmt.Sprint(c.Connected)
	}
	if c.Desired == 0 {
		out.Title = "nothing is desired yet: no scheduled pods, no redeemed EnrollmentTokens"
	}
	if c.Connected < c.Desired {
		out.Class = "num bad"
		out.Title = fmt.Sprintf("%d of %d collectors are not connected", c.Desired-c.Connected, c.Desired)
	}
	return out
}

// throughputCell is the group's items per second over all signals: accepted by receivers (in) or sent by
// exporters (out), with the refused or failed rate as the tooltip.
func throughputCell(th *v1alpha1.ThroughputStatus, in bool) cell {
	if th == nil {
		return cell{Text: "-", Class: "num muted", Title: "no own metrics reported"}
	}
	var ok, bad float64
	for _, s := range []*v1alpha1.SignalThroughput{th.Spans, th.MetricPoints, th.LogRecords} {
		if s == nil {
			continue
		}
		if in {
			ok, bad = ok+rate(s.Accepted), bad+rate(s.Refused)
		} else {
			ok, bad = ok+rate(s.Sent), bad+rate(s.Failed)
		}
	}
	what := "refused"
	if !in {
		what = "failed"
	}
	c := cell{Text: formatRate(ok), Class: "num", Title: formatRate(bad) + "/s " + what}
	if bad > 0 {
		c.Class = "num warn"
	}
	return c
}

func collectorPath(ns, name string) string {
	return "/collectors/" + url.PathEscape(ns) + "/" + url.PathEscape(name)
}

// collectorsPage is what the Collectors page shows.
type collectorsPage struct {
	// Namespaces are those the viewer may see that hold ManagedCollectors; Namespace is the filter.
	Namespaces []string
	Namespace  string
	Summary    []fieldValue
	Table      table
	// From and To are the 1-based rows shown of Total; Prev and Next link the neighbouring pages.
	From, To, Total int
	Prev, Next      string
}

// fleetSummary adds up every ManagedCollector the page covers, not only those of one page.
type fleetSummary struct {
	collectors, ready                   int
	desired, connected, failed, drifted int32
	in, out                             float64
	withThroughput                      int
}

// buildCollectorsPage renders page (1-based) of mcs, which are the viewer's ManagedCollectors after the
// namespace filter, in namespace/name order.
func buildCollectorsPage(mcs []*v1alpha1.ManagedCollector, namespaces []string, filter string, page int, now time.Time) collectorsPage {
	var s fleetSummary
	for _, mc := range mcs {
		s.collectors++
		if apimeta.IsStatusConditionTrue(mc.Status.Conditions, v1alpha1.ConditionReady) {
			s.ready++
		}
		c := mc.Status.Counts
		s.desired, s.connected, s.failed, s.drifted = s.desired+c.Desired, s.connected+c.Connected, s.failed+c.ConfigFailed, s.drifted+c.ConfigDrifted
		if th := mc.Status.Throughput; th != nil {
			s.withThroughput++
			for _, st := range []*v1alpha1.SignalThroughput{th.Spans, th.MetricPoints, th.LogRecords} {
				if st != nil {
					s.in, s.out = s.in+rate(st.Accepted), s.out+rate(st.Sent)
				}
			}
		}
	}
	pages := max(1, (len(mcs)+PageSize-1)/PageSize)
	page = min(max(page, 1), pages)
	from := (page - 1) * PageSize
	to := min(from+PageSize, len(mcs))
	p := collectorsPage{
		Namespaces: namespaces,
		Namespace:  filter,
		Table:      buildTable(collectorColumns, mcs[from:to], now),
		From:       min(from+1, to),
		To:         to,
		Total:      len(mcs),
	}
	link := func(n int) string {
		v := url.Values{}
		if filter != "" {
			v.Set("namespace", filter)
		}
		v.Set("page", strconv.Itoa(n))
		return "/?" + v.Encode()
	}
	if page > 1 {
		p.Prev = link(page - 1)
	}
	if page < pages {
		p.Next = link(page + 1)
	}
	connected := cell{Text: fmt.Sprintf("%d/%d", s.connected, s.desired), Class: "num"}
	if s.connected < s.desired {
		connected.Class = "num bad"
	}
	readyCell := cell{Text: fmt.Sprintf("%d of %d", s.ready, s.collectors), Class: "num"}
	if s.ready < s.collectors {
		readyCell.Class = "num warn"
	}
	p.Summary = []fieldValue{
		{"ManagedCollectors", cell{Text: strconv.Itoa(s.collectors), Class: "num"}},
		{"Ready", readyCell},
		{"Collectors connected", connected},
		{"Config failed", countCell(s.failed, true)},
		{"Drifted", countCell(s.drifted, true)},
		{"Items in /s", cell{Text: formatRate(s.in), Class: "num", Title: fmt.Sprintf("over the %d ManagedCollectors reporting own metrics", s.withThroughput)}},
		{"Items out /s", cell{Text: formatRate(s.out), Class: "num"}},
	}
	return p
}

// metav1Time is t's time, zero for nil.
func metav1Time(t *metav1.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.Time
}
