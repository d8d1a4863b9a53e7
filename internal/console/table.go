package console

import (
	"strconv"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// cell is one table cell as a page shows it. Class is a CSS class (ok, bad, warn, muted, num); Href makes the
// text a link; Title is its tooltip.
type cell struct {
	Text, Class, Title, Href string
}

// column is a table column: its header and what a row shows in it. A page's columns are a list, so showing one
// more status field is one more entry there.
type column[T any] struct {
	Header string
	Cell   func(row T, now time.Time) cell
}

// table is a rendered table: headers and rows of cells.
type table struct {
	Headers []string
	Rows    [][]cell
}

// buildTable renders rows with columns.
func buildTable[T any](columns []column[T], rows []T, now time.Time) table {
	t := table{Headers: make([]string, len(columns)), Rows: make([][]cell, 0, len(rows))}
	for i, c := range columns {
		t.Headers[i] = c.Header
	}
	for _, r := range rows {
		cells := make([]cell, len(columns))
		for i, c := range columns {
			cells[i] = c.Cell(r, now)
		}
		t.Rows = append(t.Rows, cells)
	}
	return t
}

// field is one line of a page's summary: a label and its value.
type field[T any] struct {
	Label string
	Value func(obj T, now time.Time) cell
}

// fieldValue is a rendered summary line.
type fieldValue struct {
	Label string
	Value cell
}

func buildFields[T any](fields []field[T], obj T, now time.Time) []fieldValue {
	out := make([]fieldValue, 0, len(fields))
	for _, f := range fields {
		out = append(out, fieldValue{Label: f.Label, Value: f.Value(obj, now)})
	}
	return out
}

// conditionCell shows a condition's status, with its reason and message as the tooltip: True is ok, False bad,
// Unknown and absent muted. inverted is for conditions where True is the bad news (Stalled).
func conditionCell(conds []metav1.Condition, typ string, inverted bool) cell {
	c := apimeta.FindStatusCondition(conds, typ)
	if c == nil {
		return cell{Text: "-", Class: "muted", Title: "no " + typ + " condition yet"}
	}
	out := cell{Text: string(c.Status), Title: c.Reason}
	if c.Message != "" {
		out.Title += ": " + c.Message
	}
	good, bad := metav1.ConditionTrue, metav1.ConditionFalse
	if inverted {
		good, bad = bad, good
	}
	switch c.Status {
	case good:
		out.Class = "ok"
	case bad:
		out.Class = "bad"
	default:
		out.Class = "muted"
	}
	return out
}

// countCell is a number of collectors; nonzero is bad when badIfAny.
func countCell(n int32, badIfAny bool) cell {
	c := cell{Text: strconv.Itoa(int(n)), Class: "num"}
	if badIfAny && n > 0 {
		c.Class = "num bad"
	}
	return c
}
