package console

import (
	"errors"
	"fmt"
	"html"
	"maps"
	"slices"
	"strings"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/collectorconfig"
)

// The topology's geometry, in SVG user units (pixels at 100%).
const (
	nodeW      = 210
	nodeH      = 58
	colGap     = 120
	rowGap     = 14
	laneHeader = 30
	laneGap    = 18
	pad        = 12
	maxLabel   = 28
)

// signalOfPipeline is the telemetry a pipeline type carries, as status.throughput names it.
var signalOfPipeline = map[string]v1alpha1.TelemetrySignal{
	"traces": v1alpha1.SignalSpans, "metrics": v1alpha1.SignalMetricPoints, "logs": v1alpha1.SignalLogRecords,
}

// pipelineOrder sorts lanes as people read a collector config: traces, metrics, logs, profiles, then by ID.
var pipelineOrder = map[string]int{"traces": 0, "metrics": 1, "logs": 2, "profiles": 3}

// topoNode is one box: a component in one pipeline's lane.
type topoNode struct {
	kind     string // receiver, processor, exporter, connector
	id       string
	pipeline string
	x, y     int
	stats    string
	// more is a third line: an exporter's queue.
	more   string
	detail string
	bad    bool
}

type topoEdge struct {
	from, to *topoNode
	label    string
	bad      bool
}

// RenderTopology draws the pipelines of a collector config as an SVG graph: one lane per pipeline, its
// receivers, processors (in order) and exporters left to right, and a dashed link from a connector where one
// pipeline exports to it to where another receives from it. Nodes and edges carry items per second, refused and
// failed per second from th, the ManagedCollector's status.throughput (nil draws the graph without numbers).
// It is pure: the same config and throughput give the same bytes. A config that does not parse, or has no
// pipelines, is an error to show instead of a graph.
func RenderTopology(config string, th *v1alpha1.ThroughputStatus) (string, error) {
	shape, err := collectorconfig.ParseShape(config)
	if err != nil {
		return "", err
	}
	if len(shape.Pipelines) == 0 {
		return "", errors.New("config has no service.pipelines")
	}
	names := make([]string, 0, len(shape.Pipelines))
	maxProcs := 0
	for name, p := range shape.Pipelines {
		names = append(names, name)
		maxProcs = max(maxProcs, len(p["processors"]))
	}
	slices.SortFunc(names, func(a, b string) int {
		ta, _, _ := strings.Cut(a, "/")
		tb, _, _ := strings.Cut(b, "/")
		oa, oka := pipelineOrder[ta]
		ob, okb := pipelineOrder[tb]
		if !oka {
			oa = len(pipelineOrder)
		}
		if !okb {
			ob = len(pipelineOrder)
		}
		if oa != ob {
			return oa - ob
		}
		return strings.Compare(a, b)
	})
	connectors := shape.Components["connectors"]
	rates := componentRates(th)
	colX := func(col int) int { return pad + col*(nodeW+colGap) }
	exporterCol := maxProcs + 1
	width := colX(exporterCol) + nodeW + pad

	var b strings.Builder
	var nodes []*topoNode
	var edges []topoEdge
	type laneBox struct {
		name, title string
		y, h        int
	}
	var lanes []laneBox
	// Where each connector is exported to and received from, for the links between lanes.
	connectorFrom := map[string][]*topoNode{}
	connectorTo := map[string][]*topoNode{}
	y := pad
	for _, name := range names {
		p := shape.Pipelines[name]
		typ, _, _ := strings.Cut(name, "/")
		signal := signalOfPipeline[typ]
		recv, procs, exps := p["receivers"], p["processors"], p["exporters"]
		rows := max(len(recv), len(exps), 1)
		laneH := laneHeader + rows*nodeH + (rows-1)*rowGap + pad
		top := y + laneHeader
		place := func(col, i, n int) (int, int) {
			offset := (rows - n) * (nodeH + rowGap) / 2
			return colX(col), top + offset + i*(nodeH+rowGap)
		}
		var left, right []*topoNode
		for i, id := range recv {
			n := &topoNode{kind: "receiver", id: id, pipeline: name}
			if connectors[id] {
				n.kind = "connector"
				connectorTo[id] = append(connectorTo[id], n)
			}
			n.x, n.y = place(0, i, len(recv))
			r := rates[rateKey{v1alpha1.ComponentReceiver, id, signal}]
			n.stats, n.detail, n.bad = r.receiverStats()
			nodes = append(nodes, n)
			left = append(left, n)
		}
		var chain []*topoNode
		for i, id := range procs {
			n := &topoNode{kind: "processor", id: id, pipeline: name, stats: "processor"}
			n.x, n.y = place(1+i, 0, 1)
			nodes = append(nodes, n)
			chain = append(chain, n)
		}
		for i, id := range exps {
			n := &topoNode{kind: "exporter", id: id, pipeline: name}
			if connectors[id] {
				n.kind = "connector"
				connectorFrom[id] = append(connectorFrom[id], n)
			}
			n.x, n.y = place(exporterCol, i, len(exps))
			r := rates[rateKey{v1alpha1.ComponentExporter, id, signal}]
			n.stats, n.more, n.detail, n.bad = r.exporterStats()
			nodes = append(nodes, n)
			right = append(right, n)
		}
		// Receivers feed the first processor, each processor the next, the last one every exporter.
		firstTargets := right
		if len(chain) > 0 {
			firstTargets = chain[:1]
		}
		for _, r := range left {
			rr := rates[rateKey{v1alpha1.ComponentReceiver, r.id, signal}]
			for _, t := range firstTargets {
				label, bad := rr.receiverEdge()
				edges = append(edges, topoEdge{from: r, to: t, label: label, bad: bad})
			}
		}
		for i := 1; i < len(chain); i++ {
			edges = append(edges, topoEdge{from: chain[i-1], to: chain[i]})
		}
		if len(chain) > 0 {
			last := chain[len(chain)-1]
			for _, e := range right {
				er := rates[rateKey{v1alpha1.ComponentExporter, e.id, signal}]
				label, bad := er.exporterEdge()
				edges = append(edges, topoEdge{from: last, to: e, label: label, bad: bad})
			}
		}
		lanes = append(lanes, laneBox{name: name, title: laneTitle(name, signal, th), y: y, h: laneH})
		y += laneH + laneGap
	}
	height := y - laneGap + pad

	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="topology" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="Pipelines of the collector config">`+"\n", width, height, width, height)
	b.WriteString(`<defs><marker id="lm-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path class="arrowhead" d="M0,0 L10,5 L0,10 z"/></marker></defs>` + "\n")
	for _, l := range lanes {
		fmt.Fprintf(&b, `<g class="lane" data-pipeline="%s"><rect class="lane-box" x="%d" y="%d" width="%d" height="%d" rx="6"/><text class="lane-title" x="%d" y="%d">%s</text></g>`+"\n",
			esc(l.name), pad/2, l.y, width-pad, l.h, pad+4, l.y+20, esc(l.title))
	}
	for _, e := range edges {
		x1, y1 := e.from.x+nodeW, e.from.y+nodeH/2
		x2, y2 := e.to.x, e.to.y+nodeH/2
		mx := (x1 + x2) / 2
		fmt.Fprintf(&b, `<path class="%s" d="M%d,%d C%d,%d %d,%d %d,%d" marker-end="url(#lm-arrow)"/>`+"\n", edgeClass("edge", e.bad), x1, y1, mx, y1, mx, y2, x2, y2)
		if e.label != "" {
			// At the end where the edges of one fan are apart: a receiver's where it leaves, an exporter's
			// where it arrives.
			lx, ly, anchor := x2-8, y2-6, "end"
			if e.from.x == colX(0) {
				lx, ly, anchor = x1+8, y1-6, "start"
			}
			fmt.Fprintf(&b, `<text class="%s" x="%d" y="%d" text-anchor="%s">%s</text>`+"\n", edgeClass("edge-label", e.bad), lx, ly, anchor, esc(e.label))
		}
	}
	for _, id := range slices.Sorted(maps.Keys(connectorFrom)) {
		for _, from := range connectorFrom[id] {
			for _, to := range connectorTo[id] {
				x1, y1 := from.x+nodeW/2, from.y+nodeH
				x2, y2 := to.x+nodeW/2, to.y
				if to.y < from.y {
					y1, y2 = from.y, to.y+nodeH
				}
				fmt.Fprintf(&b, `<path class="link" data-connector="%s" d="M%d,%d C%d,%d %d,%d %d,%d" marker-end="url(#lm-arrow)"/>`+"\n",
					esc(id), x1, y1, x1, (y1+y2)/2, x2, (y1+y2)/2, x2, y2)
			}
		}
	}
	for _, n := range nodes {
		cls := "node " + n.kind
		if n.bad {
			cls += " bad"
		}
		label := n.id
		if r := []rune(label); len(r) > maxLabel {
			label = string(r[:maxLabel-1]) + "…"
		}
		title := n.kind + " " + n.id + " in pipeline " + n.pipeline
		if n.detail != "" {
			title += ": " + n.detail
		}
		more := ""
		if n.more != "" {
			more = fmt.Sprintf(`<text class="stat" x="%d" y="%d">%s</text>`, n.x+10, n.y+51, esc(n.more))
		}
		fmt.Fprintf(&b, `<g class="%s" data-component="%s" data-pipeline="%s"><title>%s</title><rect x="%d" y="%d" width="%d" height="%d" rx="5"/><text class="node-id" x="%d" y="%d">%s</text><text class="stat" x="%d" y="%d">%s</text>%s</g>`+"\n",
			cls, esc(n.kind+"/"+n.id), esc(n.pipeline), esc(title), n.x, n.y, nodeW, nodeH, n.x+10, n.y+19, esc(label), n.x+10, n.y+35, esc(n.stats), more)
	}
	b.WriteString("</svg>\n")
	return b.String(), nil
}

func edgeClass(base string, bad bool) string {
	if bad {
		return base + " bad"
	}
	return base
}

func esc(s string) string { return html.EscapeString(s) }

// laneTitle is the pipeline's ID and its signal's totals over the group.
func laneTitle(name string, signal v1alpha1.TelemetrySignal, th *v1alpha1.ThroughputStatus) string {
	st := signalThroughput(th, signal)
	if st == nil {
		return name
	}
	t := fmt.Sprintf("%s — %s: %s/s in, %s/s out", name, strings.ToLower(signalName(signal)), formatRate(rate(st.Accepted)), formatRate(rate(st.Sent)))
	if r := rate(st.Refused); r > 0 {
		t += ", " + formatRate(r) + "/s refused"
	}
	if f := rate(st.Failed); f > 0 {
		t += ", " + formatRate(f) + "/s failed"
	}
	return t
}

// signalName is how the pages name a signal.
func signalName(s v1alpha1.TelemetrySignal) string {
	switch s {
	case v1alpha1.SignalSpans:
		return "Spans"
	case v1alpha1.SignalMetricPoints:
		return "Metric points"
	case v1alpha1.SignalLogRecords:
		return "Log records"
	}
	return string(s)
}

func signalThroughput(th *v1alpha1.ThroughputStatus, s v1alpha1.TelemetrySignal) *v1alpha1.SignalThroughput {
	if th == nil {
		return nil
	}
	switch s {
	case v1alpha1.SignalSpans:
		return th.Spans
	case v1alpha1.SignalMetricPoints:
		return th.MetricPoints
	case v1alpha1.SignalLogRecords:
		return th.LogRecords
	}
	return nil
}

type rateKey struct {
	kind   v1alpha1.ComponentKind
	name   string
	signal v1alpha1.TelemetrySignal
}

// componentRate is one component's numbers from status.throughput.components; known is false for a component
// the status does not list (it lists the 20 busiest).
type componentRate struct {
	known               bool
	rate, errRate       float64
	queueSize, queueCap int64
	hasQueue            bool
}

func componentRates(th *v1alpha1.ThroughputStatus) map[rateKey]componentRate {
	out := map[rateKey]componentRate{}
	if th == nil {
		return out
	}
	for _, c := range th.Components {
		r := componentRate{known: true, rate: rate(c.Rate), errRate: rate(c.ErrorRate)}
		if c.QueueCapacity != nil {
			r.hasQueue, r.queueCap = true, *c.QueueCapacity
			if c.QueueSize != nil {
				r.queueSize = *c.QueueSize
			}
		}
		out[rateKey{c.Kind, c.Name, c.Signal}] = r
	}
	return out
}

func (r componentRate) receiverStats() (stats, detail string, bad bool) {
	if !r.known {
		return "no throughput reported", "", false
	}
	stats = fmt.Sprintf("%s/s · %s refused/s", formatRate(r.rate), formatRate(r.errRate))
	return stats, stats, r.errRate > 0
}

func (r componentRate) exporterStats() (stats, more, detail string, bad bool) {
	if !r.known {
		return "no throughput reported", "", "", false
	}
	stats = fmt.Sprintf("%s/s · %s failed/s", formatRate(r.rate), formatRate(r.errRate))
	detail = stats
	if r.hasQueue {
		more = fmt.Sprintf("queue %d/%d", r.queueSize, r.queueCap)
		detail += ", " + more
	}
	return stats, more, detail, r.errRate > 0
}

func (r componentRate) receiverEdge() (string, bool) {
	if !r.known {
		return "", false
	}
	l := formatRate(r.rate) + "/s"
	if r.errRate > 0 {
		l += " (" + formatRate(r.errRate) + " refused)"
	}
	return l, r.errRate > 0
}

func (r componentRate) exporterEdge() (string, bool) {
	if !r.known {
		return "", false
	}
	l := formatRate(r.rate) + "/s"
	if r.errRate > 0 {
		l += " (" + formatRate(r.errRate) + " failed)"
	}
	return l, r.errRate > 0
}
