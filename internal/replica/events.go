package replica

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/fleet"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
)

// The collectors' Events are written as Events of their own, not through client-go's events recorder.
// That recorder folds every Event of one reason about one object version (tools/events' getKey leaves the
// note out) into a series that keeps the first Event's note and drops the later ones until its 30-minute
// refresh: "Collector pod-1 reconnected" would stand, counted twice, for the 90 collectors that
// reconnected in the next seconds of a failover, when nobody writes the ManagedCollector. The fleet has
// aggregated them already: at most one Event per reason and detail per ManagedCollector per second per
// replica, with the number of collectors in the note, so the API sees no more Events than the recorder
// would write.

// eventAction is the Event's action: what the operator was doing when the transition happened.
const eventAction = "OpAMP"

// eventQueue bounds the Events waiting to be written; beyond it they are dropped, with a log line, rather
// than hold up the replica's reports.
const eventQueue = 256

// eventWrite is one Event to write, and the ManagedCollector it is about as the cache had it.
type eventWrite struct {
	mc    *v1alpha1.ManagedCollector
	event fleet.Event
	at    time.Time
}

// queueEvent hands an Event to the writer.
func (r *Replica) queueEvent(log logger, mc *v1alpha1.ManagedCollector, e fleet.Event) {
	select {
	case r.events <- eventWrite{mc: mc, event: e, at: r.opts.Clock.Now()}:
	default:
		log.Info("Dropping a collector Event: too many waiting to be written", "managedCollector", mc.Namespace+"/"+mc.Name, "reason", e.Reason)
	}
}

// writeEvents writes the queued Events until ctx is done, retrying each a few times on errors.
func (r *Replica) writeEvents(ctx context.Context, log logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case w := <-r.events:
			ev := r.makeEvent(w)
			var err error
			for attempt := range 3 {
				if attempt > 0 {
					select {
					case <-ctx.Done():
						return
					case <-r.opts.Clock.After(time.Second):
					}
				}
				ev.ResourceVersion = ""
				if err = r.opts.Client.Create(ctx, ev); err == nil {
					break
				}
			}
			if err != nil && ctx.Err() == nil {
				log.Error(err, "Writing a collector Event", "managedCollector", w.mc.Namespace+"/"+w.mc.Name, "reason", w.event.Reason)
			}
		}
	}
}

// makeEvent is the Event as client-go's recorder would make it, named by this replica so that two
// replicas never pick one name.
func (r *Replica) makeEvent(w eventWrite) *eventsv1.Event {
	typ := w.event.Type
	if typ != corev1.EventTypeWarning {
		typ = corev1.EventTypeNormal
	}
	return &eventsv1.Event{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: w.mc.Namespace,
			Name:      fmt.Sprintf("%s.%x%s", w.mc.Name, w.at.UnixNano(), r.hash[:4]),
		},
		EventTime:           metav1.NewMicroTime(w.at),
		ReportingController: naming.FieldOwner,
		ReportingInstance:   r.opts.ID,
		Action:              eventAction,
		Reason:              w.event.Reason,
		Type:                typ,
		Note:                w.event.Message,
		Regarding: corev1.ObjectReference{
			APIVersion:      v1alpha1.GroupVersion.String(),
			Kind:            "ManagedCollector",
			Namespace:       w.mc.Namespace,
			Name:            w.mc.Name,
			UID:             w.mc.UID,
			ResourceVersion: w.mc.ResourceVersion,
		},
	}
}
