package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/linkmesh/linkmesh-operator/test/bench/apirequests"
)

// The tables are Markdown, so a run's output can go into the README or an issue as it is.

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func cpu(s float64) string { return fmt.Sprintf("%.2f s", s) }

// megabytes and kilobytes are decimal, as in the goals of issue #13 ("40 KB per collector").
func megabytes(b uint64) string { return fmt.Sprintf("%.0f MB", float64(b)/1e6) }

func kilobytes(b float64) string { return fmt.Sprintf("%.1f KB", b/1e3) }

func ratio(a, b float64) string {
	if b <= 0 {
		return ""
	}
	return fmt.Sprintf("%.2f×", a/b)
}

// thousands writes n as 10,000.
func thousands(n int) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// eventsWritten counts the writes of Events (core and events.k8s.io).
func eventsWritten(c apirequests.Counts) int64 {
	return c.Total(func(k apirequests.Key) bool { return k.Resource == "events" && k.Write() })
}

type table struct {
	w    io.Writer
	cols int
}

func (t table) row(cells ...string) {
	for len(cells) < t.cols {
		cells = append(cells, "")
	}
	fmt.Fprintf(t.w, "| %s |\n", strings.Join(cells, " | "))
}

func (r *fleetResult) print(w io.Writer) {
	procs := "one load generator process"
	if r.processes > 1 {
		procs = fmt.Sprintf("%d load generator processes", r.processes)
	}
	fmt.Fprintf(w, "\n### %s collectors (%s)\n\n", thousands(r.n), procs)
	t := table{w: w, cols: 2}
	if r.floor != nil {
		t.cols = 4
		t.row("", "operator", "floor", "operator / floor")
		t.row("---", "---:", "---:", "---:")
	} else {
		t.row("", "operator")
		t.row("---", "---:")
	}
	f := r.floor
	dur := func(name string, op time.Duration, fl func(*side) time.Duration) {
		if f == nil {
			t.row(name, secs(op))
			return
		}
		t.row(name, secs(op), secs(fl(f)), ratio(op.Seconds(), fl(f).Seconds()))
	}
	num := func(name string, op float64, fl func(*side) float64, format func(float64) string) {
		if f == nil {
			t.row(name, format(op))
			return
		}
		t.row(name, format(op), format(fl(f)), ratio(op, fl(f)))
	}
	dur("all connected", r.op.Connected, func(s *side) time.Duration { return s.Connected })
	dur("all configured", r.op.Configured, func(s *side) time.Duration { return s.Configured })
	t.row("status shows all connected and applied", secs(r.statusAll))
	dur("edit reaches all", r.op.FanOut, func(s *side) time.Duration { return s.FanOut })
	t.row("status shows the edit applied by all", secs(r.statusEdit))
	mem := func(b uint64) string { return megabytes(b) }
	if f == nil {
		t.row("RSS after the steady window (peak)", fmt.Sprintf("%s (%s)", mem(r.op.RSS), mem(r.op.Peak)))
	} else {
		t.row("RSS after the steady window (peak)", fmt.Sprintf("%s (%s)", mem(r.op.RSS), mem(r.op.Peak)),
			fmt.Sprintf("%s (%s)", mem(f.RSS), mem(f.Peak)), ratio(float64(r.op.RSS), float64(f.RSS)))
	}
	num("RSS per collector", float64(r.op.RSS)/float64(r.n), func(s *side) float64 { return float64(s.RSS) / float64(r.n) }, kilobytes)
	num("CPU in the ramp", r.op.CPURamp, func(s *side) float64 { return s.CPURamp }, cpu)
	num(fmt.Sprintf("CPU in the steady window (%s)", r.steady), r.op.CPUSteady, func(s *side) float64 { return s.CPUSteady }, cpu)
	num("CPU in the fan-out", r.op.CPUFanOut, func(s *side) float64 { return s.CPUFanOut }, cpu)
	t.row("API requests in the ramp", r.ramp.String())
	t.row(fmt.Sprintf("API requests in the steady window (%s)", r.steady), r.steadyW.String())
	t.row("API requests in the fan-out", r.fanOutW.String())
	t.row("Events written: ramp, steady, fan-out", fmt.Sprintf("%d, %d, %d", eventsWritten(r.ramp), eventsWritten(r.steadyW), eventsWritten(r.fanOutW)))
	for _, msg := range r.failures {
		fmt.Fprintf(w, "\nFAIL: %s\n", msg)
	}
}

type report struct {
	fleets []*fleetResult
}

// printSummary is one line per fleet size, as in issue #13.
func (r *report) printSummary(w io.Writer) {
	withFloor := r.fleets[0].floor != nil
	fmt.Fprintf(w, "\n### Summary\n\n")
	t := table{w: w, cols: 7}
	head := []string{"collectors", "all connected", "all configured", "status shows all", "edit reaches all", "operator RSS", "RSS per collector"}
	if withFloor {
		t.cols = 10
		head = append(head, "configured / floor", "edit / floor", "RSS / floor")
	}
	t.row(head...)
	sep := make([]string, t.cols)
	for i := range sep {
		sep[i] = "---:"
	}
	t.row(sep...)
	for _, f := range r.fleets {
		cells := []string{thousands(f.n), secs(f.op.Connected), secs(f.op.Configured), secs(f.statusAll), secs(f.op.FanOut),
			megabytes(f.op.RSS), kilobytes(float64(f.op.RSS) / float64(f.n))}
		if f.floor != nil {
			cells = append(cells, ratio(f.op.Configured.Seconds(), f.floor.Configured.Seconds()),
				ratio(f.op.FanOut.Seconds(), f.floor.FanOut.Seconds()), ratio(float64(f.op.RSS), float64(f.floor.RSS)))
		}
		t.row(cells...)
	}
}

func (r *enrollResult) print(w io.Writer) {
	fmt.Fprintf(w, "\n### Enrollment: %s hosts connect at once, each with its own EnrollmentToken\n\n", thousands(r.n))
	t := table{w: w, cols: 2}
	t.row("", "operator")
	t.row("---", "---:")
	t.row("all tokens Redeemed", secs(r.redeemed))
	t.row("all hosts configured", secs(r.configured))
	t.row("status shows all connected and applied", secs(r.status))
	writes := r.window.Requests.Total(func(k apirequests.Key) bool { return k.Write() && k.Resource != "events" })
	t.row("API writes per redeem (Events aside)", fmt.Sprintf("%.2f", float64(writes)/float64(r.n)))
	t.row("API requests", r.window.Requests.String())
	t.row("Events written", fmt.Sprint(eventsWritten(r.window.Requests)))
	t.row("operator CPU; RSS at the end", fmt.Sprintf("%s; %s", cpu(r.window.CPU), megabytes(r.window.Usage.RSS)))
	t.row("(before the clock: creating the tokens and their Secrets)", secs(r.create))
}

func (r *restartResult) print(w io.Writer) {
	fmt.Fprintf(w, "\n### Restart storm: %s collectors connected, the operator killed (SIGKILL), a new one on the same ports\n\n", thousands(r.n))
	t := table{w: w, cols: 2}
	t.row("", "operator")
	t.row("---", "---:")
	t.row("from the kill until the new listener is ready", secs(r.ready))
	t.row("from ready until all reconnected", secs(r.back))
	t.row("from ready until the operator counts all connected and applied", secs(r.configured))
	status := "no status write within 15 s (status was already right)"
	if r.statusSeen {
		status = secs(r.status)
	}
	t.row("from ready until status shows all", status)
	t.row("GETs of secrets, enrollmenttokens, managedcollectors (reads past the informer cache)", fmt.Sprint(pastCache(r.storm.Requests)))
	t.row("API requests from the kill until status shows all", r.storm.Requests.String())
	t.row("Events written", fmt.Sprint(eventsWritten(r.storm.Requests)))
	t.row("new operator CPU since its start; RSS at the end", fmt.Sprintf("%s; %s", cpu(r.storm.CPU), megabytes(r.storm.Usage.RSS)))
}
