package console

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
)

// rate is a per-second quantity as a float; nil is 0.
func rate(q *resource.Quantity) float64 {
	if q == nil {
		return 0
	}
	return q.AsApproximateFloat64()
}

// formatRate is items per second for people: three significant digits, k and M for large values.
func formatRate(v float64) string {
	switch {
	case v == 0 || math.IsNaN(v) || math.IsInf(v, 0):
		return "0"
	case v >= 1e6:
		return trimFloat(v/1e6) + "M"
	case v >= 1e3:
		return trimFloat(v/1e3) + "k"
	default:
		return trimFloat(v)
	}
}

// trimFloat prints v with three significant digits and no trailing zeros.
func trimFloat(v float64) string {
	s := strconv.FormatFloat(v, 'f', max(0, 2-int(math.Floor(math.Log10(math.Abs(v))))), 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// age is how long ago t was, in kubectl's style (5s, 3m, 2h, 4d); empty for a zero time.
func age(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return humanDuration(now.Sub(t))
}

// until is how long until t, as age prints it; "expired" once t has passed.
func until(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	if !t.After(now) {
		return "expired"
	}
	return "in " + humanDuration(t.Sub(now))
}

func humanDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}

// shortHash is the first 12 characters of a config hash, as the events print it.
func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
