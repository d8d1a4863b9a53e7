package cli

import (
	"io"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/printers"
)

// column is one column of a table: its header and how a row shows in it. Tables are slices of columns, so
// showing a new status field is one more element.
type column[T any] struct {
	header string
	value  func(*T) string
}

// none is what kubectl prints for a value that is not there.
const none = "<none>"

// printTable writes rows under cols as kubectl get does, each line prefixed with indent.
func printTable[T any](w io.Writer, indent string, cols []column[T], rows []T) error {
	tw := printers.GetNewTabWriter(w)
	cells := make([]string, len(cols))
	for i, c := range cols {
		cells[i] = c.header
	}
	out(tw, "%s%s\n", indent, strings.Join(cells, "\t"))
	for r := range rows {
		for i, c := range cols {
			cells[i] = oneLine(c.value(&rows[r]))
			if cells[i] == "" {
				cells[i] = none
			}
		}
		out(tw, "%s%s\n", indent, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// oneLine keeps a message from breaking the table.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// age is how long ago t was, as kubectl get prints it; empty for the zero time.
func age(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return duration.HumanDuration(now.Sub(t))
}
