package fleet

import (
	"fmt"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/bounded"
)

// maxEventKinds bounds the distinct events a group keeps between two snapshots. Agents add to the count
// of an existing kind, so a thousand pods that fail the same way make one Event, not a thousand.
const maxEventKinds = 16

// maxDetailLen keeps an aggregated Event's message well under the API's 1 KiB note limit.
const maxDetailLen = 512

type eventKey struct {
	reason string
	// detail is the varying part that deserves its own Event: the error text of a failure.
	detail string
	hash   string
}

type pendingEvent struct {
	eventType string
	count     int
	// sample is the first agent that made the transition, named in the message.
	sample string
}

// eventLog aggregates a group's agent transitions between two snapshots.
type eventLog struct {
	order   []eventKey
	pending map[eventKey]*pendingEvent
}

// otherDetail stands for the details of transitions that found no room of their own.
const otherDetail = "(other errors, see status.agents)"

func (l *eventLog) add(reason, eventType, detail, hash string, a *agent) {
	if l.pending == nil {
		l.pending = map[eventKey]*pendingEvent{}
	}
	k := eventKey{reason: reason, detail: bounded.Truncate(detail, maxDetailLen), hash: hash}
	if p := l.pending[k]; p != nil {
		p.count++
		return
	}
	if len(l.order) >= maxEventKinds {
		// Full: fold into one Event per reason, so the log stays bounded by the number of reasons.
		k = eventKey{reason: reason, detail: otherDetail}
		if p := l.pending[k]; p != nil {
			p.count++
			return
		}
	}
	l.order = append(l.order, k)
	l.pending[k] = &pendingEvent{eventType: eventType, count: 1, sample: a.display()}
}

func (l *eventLog) empty() bool { return len(l.order) == 0 }

func (l *eventLog) drain() []Event {
	if len(l.order) == 0 {
		return nil
	}
	out := make([]Event, 0, len(l.order))
	for _, k := range l.order {
		p := l.pending[k]
		out = append(out, Event{Type: p.eventType, Reason: k.reason, Message: message(k, p)})
	}
	*l = eventLog{}
	return out
}

func message(k eventKey, p *pendingEvent) string {
	who := "Collector " + p.sample
	if p.count > 1 {
		who = fmt.Sprintf("%d collectors, including %s,", p.count, p.sample)
	}
	var verb string
	switch k.reason {
	case v1alpha1.EventRegistered:
		verb = "registered"
	case v1alpha1.EventConfigApplied:
		verb = "applied config " + shortHash(k.hash)
	case v1alpha1.EventConfigFailed:
		verb = fmt.Sprintf("failed to apply config %s: %s", shortHash(k.hash), k.detail)
	case v1alpha1.EventDisconnected:
		verb = "disconnected"
	case v1alpha1.EventOwnMetricsOffered:
		verb = "was offered the own_metrics destination"
	case v1alpha1.EventConfigDrift:
		verb = fmt.Sprintf("reports config %s applied, but its %s; re-applying it", shortHash(k.hash), k.detail)
	case v1alpha1.EventConfigHealed:
		verb = "runs config " + shortHash(k.hash) + " again"
	case v1alpha1.EventUnhealthy:
		verb = "reported unhealthy"
		if k.detail != "" {
			verb += ": " + k.detail
		}
	default:
		verb = k.reason
	}
	return who + " " + verb
}

func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
