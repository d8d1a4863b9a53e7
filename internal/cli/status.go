package cli

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	eventsv1 "k8s.io/api/events/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/manifests"
)

// maxEvents is how many of a ManagedCollector's events status shows, the most recent.
const maxEvents = 20

func newStatusCommand(e *env) *cobra.Command {
	var allNamespaces bool
	cmd := &cobra.Command{
		Use:   "status [COLLECTOR]",
		Short: "Show the ManagedCollectors, or one with its collectors and recent events",
		Long: `Show the ManagedCollectors of the namespace: readiness, connected and healthy collectors, drift and
throughput. With COLLECTOR, show that ManagedCollector's collectors (host, pod, node, connection, config
status) and its recent events.`,
		Example: `  kubectl linkmesh status -A
  kubectl linkmesh status node-agents -n observability`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := e.client()
			if err != nil {
				return err
			}
			if len(args) == 1 {
				if allNamespaces {
					return fmt.Errorf("a COLLECTOR is in one namespace: use -n instead of --all-namespaces")
				}
				return showCollector(cmd.Context(), c, e, ns, args[0])
			}
			return listCollectors(cmd.Context(), c, e, ns, allNamespaces)
		},
	}
	cmd.Flags().BoolVarP(&allNamespaces, "all-namespaces", "A", false, "List the ManagedCollectors of every namespace")
	return cmd
}

// collectorColumns are the printer columns of the CRD, then what a fleet view needs next.
func collectorColumns(now time.Time) []column[v1alpha1.ManagedCollector] {
	return []column[v1alpha1.ManagedCollector]{
		{"NAME", func(mc *v1alpha1.ManagedCollector) string { return mc.Name }},
		{"MODE", func(mc *v1alpha1.ManagedCollector) string { return string(manifests.Mode(mc)) }},
		{"READY", func(mc *v1alpha1.ManagedCollector) string { return conditionStatus(mc, v1alpha1.ConditionReady) }},
		{"CONNECTED", func(mc *v1alpha1.ManagedCollector) string { return mc.Status.Connected }},
		{"APPLIED", func(mc *v1alpha1.ManagedCollector) string {
			return conditionStatus(mc, v1alpha1.ConditionConfigApplied)
		}},
		{"HEALTHY", func(mc *v1alpha1.ManagedCollector) string {
			return fmt.Sprintf("%d/%d", mc.Status.Counts.Healthy, mc.Status.Counts.Connected)
		}},
		{"DRIFTED", func(mc *v1alpha1.ManagedCollector) string { return strconv.Itoa(int(mc.Status.Counts.ConfigDrifted)) }},
		{"THROUGHPUT", func(mc *v1alpha1.ManagedCollector) string { return throughput(mc.Status.Throughput) }},
		{"AGE", func(mc *v1alpha1.ManagedCollector) string { return age(now, mc.CreationTimestamp.Time) }},
		{"REASON", func(mc *v1alpha1.ManagedCollector) string { return conditionReason(mc, v1alpha1.ConditionReady) }},
	}
}

// agentColumns show one collector of a ManagedCollector.
func agentColumns(now time.Time) []column[v1alpha1.AgentStatus] {
	return []column[v1alpha1.AgentStatus]{
		{"HOST", func(a *v1alpha1.AgentStatus) string { return a.HostName }},
		{"POD", func(a *v1alpha1.AgentStatus) string { return a.PodName }},
		{"NODE", func(a *v1alpha1.AgentStatus) string { return a.NodeName }},
		{"CONNECTED", func(a *v1alpha1.AgentStatus) string { return strconv.FormatBool(a.Connected) }},
		{"HEALTHY", func(a *v1alpha1.AgentStatus) string { return strconv.FormatBool(a.Healthy) }},
		{"LAST SEEN", func(a *v1alpha1.AgentStatus) string {
			if a.LastSeen == nil {
				return ""
			}
			return age(now, a.LastSeen.Time)
		}},
		{"CONFIG", func(a *v1alpha1.AgentStatus) string { return string(a.ConfigStatus) }},
		{"INSTANCE", func(a *v1alpha1.AgentStatus) string { return a.InstanceUID }},
		{"MESSAGE", func(a *v1alpha1.AgentStatus) string { return a.Message }},
	}
}

// eventColumns show an Event as kubectl describe does.
func eventColumns(now time.Time) []column[eventsv1.Event] {
	return []column[eventsv1.Event]{
		{"TYPE", func(ev *eventsv1.Event) string { return ev.Type }},
		{"REASON", func(ev *eventsv1.Event) string { return ev.Reason }},
		{"AGE", func(ev *eventsv1.Event) string {
			a := age(now, lastSeen(ev))
			if ev.Series != nil && ev.Series.Count > 1 {
				a += fmt.Sprintf(" (x%d)", ev.Series.Count)
			}
			return a
		}},
		{"MESSAGE", func(ev *eventsv1.Event) string { return ev.Note }},
	}
}

func listCollectors(ctx context.Context, c client.Client, e *env, ns string, all bool) error {
	list := &v1alpha1.ManagedCollectorList{}
	opts := []client.ListOption{}
	if !all {
		opts = append(opts, client.InNamespace(ns))
	}
	if err := c.List(ctx, list, opts...); err != nil {
		return fmt.Errorf("listing ManagedCollectors: %w", err)
	}
	if len(list.Items) == 0 {
		where := fmt.Sprintf("in namespace %q", ns)
		if all {
			where = "in any namespace"
		}
		out(e.streams.ErrOut, "No ManagedCollectors found %s.\n", where)
		return nil
	}
	slices.SortFunc(list.Items, func(a, b v1alpha1.ManagedCollector) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	cols := collectorColumns(e.now())
	if all {
		cols = append([]column[v1alpha1.ManagedCollector]{{"NAMESPACE", func(mc *v1alpha1.ManagedCollector) string { return mc.Namespace }}}, cols...)
	}
	return printTable(e.streams.Out, "", cols, list.Items)
}

func showCollector(ctx context.Context, c client.Client, e *env, ns, name string) error {
	mc := &v1alpha1.ManagedCollector{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, mc); err != nil {
		return collectorError(err, ns, name)
	}
	events := &eventsv1.EventList{}
	if err := c.List(ctx, events, client.InNamespace(ns)); err != nil {
		return fmt.Errorf("listing the events of managedcollector/%s: %w", name, err)
	}
	return printCollector(e.streams.Out, e.now(), mc, events.Items)
}

// printCollector is the detail view of one ManagedCollector; events may hold other objects' events.
func printCollector(w io.Writer, now time.Time, mc *v1alpha1.ManagedCollector, events []eventsv1.Event) error {
	s := &mc.Status
	field := func(k, format string, args ...any) { out(w, "%-12s %s\n", k+":", fmt.Sprintf(format, args...)) }
	field("Name", "%s", mc.Name)
	field("Namespace", "%s", mc.Namespace)
	field("Mode", "%s", manifests.Mode(mc))
	if ready := apimeta.FindStatusCondition(s.Conditions, v1alpha1.ConditionReady); ready != nil {
		field("Ready", "%s (%s): %s", ready.Status, ready.Reason, ready.Message)
	} else {
		field("Ready", "%s (the operator has not reported on it yet)", none)
	}
	if s.ObservedGeneration != mc.Generation {
		field("Note", "status is of generation %d, the spec is at %d: the operator is catching up", s.ObservedGeneration, mc.Generation)
	}
	desired := fmt.Sprintf("of %d desired", s.Counts.Desired)
	if s.Counts.Desired == 0 {
		desired = "(none desired yet: no scheduled pods, no redeemed EnrollmentTokens)"
	}
	field("Connected", "%d %s; %d healthy, %d run the config, %d failed it, %d drifted",
		s.Counts.Connected, desired, s.Counts.Healthy, s.Counts.ConfigApplied, s.Counts.ConfigFailed, s.Counts.ConfigDrifted)
	field("Config", "%s", cmpOrNone(shortHash(s.ConfigHash)))
	field("Throughput", "%s", cmpOrNone(throughput(s.Throughput)))

	out(w, "\nCollectors:\n")
	if len(s.Agents) == 0 {
		out(w, "  %s\n", none)
	} else if err := printTable(w, "  ", agentColumns(now), s.Agents); err != nil {
		return err
	}
	if int(s.Counts.Connected) > len(s.Agents) {
		out(w, "  (status lists %d of them, failing and unhealthy first)\n", len(s.Agents))
	}

	var mine []eventsv1.Event
	for _, ev := range events {
		if ev.Regarding.Kind == "ManagedCollector" && ev.Regarding.Name == mc.Name && (ev.Regarding.UID == "" || ev.Regarding.UID == mc.UID) {
			mine = append(mine, ev)
		}
	}
	slices.SortStableFunc(mine, func(a, b eventsv1.Event) int { return lastSeen(&a).Compare(lastSeen(&b)) })
	if len(mine) > maxEvents {
		mine = mine[len(mine)-maxEvents:]
	}
	out(w, "\nEvents:\n")
	if len(mine) == 0 {
		out(w, "  %s\n", none)
		return nil
	}
	return printTable(w, "  ", eventColumns(now), mine)
}

// lastSeen is when an Event last happened, whichever of its times the writer set.
func lastSeen(ev *eventsv1.Event) time.Time {
	t := ev.EventTime.Time
	if ev.Series != nil && ev.Series.LastObservedTime.After(t) {
		t = ev.Series.LastObservedTime.Time
	}
	if ev.DeprecatedLastTimestamp.After(t) {
		t = ev.DeprecatedLastTimestamp.Time
	}
	if t.IsZero() {
		t = ev.CreationTimestamp.Time
	}
	return t
}

// throughput is the accepted items per second of each signal the collectors reported.
func throughput(t *v1alpha1.ThroughputStatus) string {
	if t == nil {
		return ""
	}
	var parts []string
	for _, s := range []struct {
		name string
		rate *v1alpha1.SignalThroughput
	}{{"spans", t.Spans}, {"points", t.MetricPoints}, {"logs", t.LogRecords}} {
		if s.rate != nil && s.rate.Accepted != nil {
			parts = append(parts, perSecond(s.rate.Accepted)+" "+s.name+"/s")
		}
	}
	return strings.Join(parts, ", ")
}

// perSecond prints a rate with at most one decimal.
func perSecond(q *resource.Quantity) string {
	return strconv.FormatFloat(math.Round(q.AsApproximateFloat64()*10)/10, 'f', -1, 64)
}

func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

func cmpOrNone(s string) string {
	if s == "" {
		return none
	}
	return s
}

func conditionStatus(mc *v1alpha1.ManagedCollector, t string) string {
	if c := apimeta.FindStatusCondition(mc.Status.Conditions, t); c != nil {
		return string(c.Status)
	}
	return ""
}

func conditionReason(mc *v1alpha1.ManagedCollector, t string) string {
	if c := apimeta.FindStatusCondition(mc.Status.Conditions, t); c != nil {
		return c.Reason
	}
	return ""
}
