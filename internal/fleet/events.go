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
	// count is the number of transitions, agents the distinct agents that made them: one flapping agent is
	// one collector, many times.
	count  int
	agents map[string]struct{}
	// sample is the first agent that made the transition, named in the message.
	sample string
}

// maxDistinct bounds the agents an aggregated event remembers to count them; beyond it the count is of
// transitions.
const maxDistinct = 1 << 16

func (p *pendingEvent) addAgent(uid string) {
	p.count++
	if len(p.agents) < maxDistinct {
		p.agents[uid] = struct{}{}
	}
}

func (p *pendingEvent) collectors() int {
	if len(p.agents) >= maxDistinct {
		return max(p.count, len(p.agents))
	}
	return len(p.agents)
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
		p.addAgent(a.uid)
		return
	}
	if len(l.order) >= maxEventKinds {
		// Full: fold into one Event per reason, so the log stays bounded by the number of reasons.
		k = eventKey{reason: reason, detail: otherDetail}
		if p := l.pending[k]; p != nil {
			p.addAgent(a.uid)
			return
		}
	}
	l.order = append(l.order, k)
	p := &pendingEvent{eventType: eventType, agents: map[string]struct{}{}, sample: a.display()}
	p.addAgent(a.uid)
	l.pending[k] = p
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
	// The verbs in the present tense, and "was", agree with one collector or several.
	was, is, s, its := "was", "is", "s", "its"
	if n := p.collectors(); n > 1 {
		who = fmt.Sprintf("%d collectors, including %s,", n, p.sample)
		was, is, s, its = "were", "are", "", "their"
	}
	var verb string
	switch k.reason {
	case v1alpha1.EventRegistered:
		verb = "registered"
		if k.detail != "" {
			verb += " " + k.detail
		}
	case v1alpha1.EventReconnected:
		verb = "reconnected, running a config from the operator"
	case v1alpha1.EventReadOnlyMember:
		verb = "no longer accept" + s + " remote config: a read-only member now, keep" + s + " running its own"
	case v1alpha1.EventTooManyCollectors:
		verb = was + " refused: the ManagedCollector already holds as many collectors as it may (spec.maxCollectors)"
	case v1alpha1.EventInstanceUIDTaken:
		verb = is + " bound to another ManagedCollector or EnrollmentToken; presented with another credential, a new instance UID was given instead"
	case v1alpha1.EventConfigApplied:
		verb = "applied config " + shortHash(k.hash)
	case v1alpha1.EventConfigFailed:
		verb = fmt.Sprintf("failed to apply config %s: %s", shortHash(k.hash), k.detail)
	case v1alpha1.EventDisconnected:
		verb = "disconnected"
	case v1alpha1.EventOwnMetricsOffered:
		verb = was + " offered the own_metrics destination"
	case v1alpha1.EventConfigDrift:
		verb = fmt.Sprintf("report%s config %s applied, but %s %s; re-applying it", s, shortHash(k.hash), its, k.detail)
	case v1alpha1.EventConfigHealed:
		verb = "run" + s + " config " + shortHash(k.hash) + " again"
	case v1alpha1.EventUnhealthy:
		verb = "reported unhealthy"
		if k.detail != "" {
			verb += ": " + k.detail
		}
	default:
		verb = k.reason
	}
	if n := p.collectors(); p.count > n {
		verb += fmt.Sprintf(" (%d times)", p.count)
	}
	return who + " " + verb
}

func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
