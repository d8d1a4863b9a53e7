package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/test/bench/apirequests"
	"github.com/linkmesh/linkmesh-operator/test/bench/loadgen"
)

func TestRolloutTable(t *testing.T) {
	steps := []intstr.IntOrString{intstr.FromString("1%"), intstr.FromString("10%"), intstr.FromString("100%")}
	res := &rolloutResult{
		n: 10000, processes: 2, settle: 2 * time.Second, reference: 2 * time.Second,
		opts: rolloutOptions{n: 10000, steps: steps, bake: 10 * time.Second, failFraction: 0.01, failBy: failByRank},
		good: rolloutRun{
			phase: 25 * time.Second, all: 24500 * time.Millisecond, offered: 10000, length: 27 * time.Second, peak: []int64{3, 0, 1},
			steps: []stepTimes{
				{target: 100, started: 100 * time.Millisecond, applied: time.Second, bakeStamp: 500 * time.Millisecond, completed: 11 * time.Second},
				{target: 1000, started: 11 * time.Second, applied: 12 * time.Second, bakeStamp: 12 * time.Second, completed: 22 * time.Second},
				{target: 10000, started: 22 * time.Second, applied: 25 * time.Second, completed: 25 * time.Second},
			},
			window: measured{Requests: apirequests.Counts{
				{Verb: "PATCH", Resource: "managedcollectors", Subresource: "status"}: 18,
				{Verb: "POST", Resource: "events"}:                                    6,
				{Verb: "APPLY", Resource: "configmaps"}:                               3,
			}},
		},
		bad: rolloutRun{
			phase: 2 * time.Second, all: 3 * time.Second, offered: 100, failed: 100, length: 5 * time.Second,
			steps:  []stepTimes{{target: 100, started: 100 * time.Millisecond}},
			status: v1alpha1.RolloutStatus{Phase: v1alpha1.RolloutRolledBack, Step: 0, Failed: 100, LastFailure: &v1alpha1.RolloutFailure{Reason: "ConfigFailed", Message: "no"}},
		},
		events: map[string][2]int{v1alpha1.EventRolloutStarted: {2, 2}, v1alpha1.EventRolledBack: {1, 1}},
	}
	var b bytes.Buffer
	res.print(&b)
	for _, want := range []string{
		"### Progressive rollout: 10,000 collectors, steps [1%, 10%, 100%], bake time 10s (2 load generator processes)",
		"| ideal: 2 bake times + the AllAtOnce fan-out | 22.00 s |",
		"| Complete / ideal | 1.14× |",
		"| step 1 (1%, 100 collectors): started; all applied; completed | 0.10 s; 1.00 s; 11.00 s |",
		"| step 3 (100%, 10,000 collectors): started; all applied; completed | 22.00 s; 25.00 s; 25.00 s |",
		"until step 2 started | 10.00 s; 10.50 s |",
		"(27.00 s): all (status, Events, owned objects); most in one second | 1.00 (0.67, 0.22, 0.11); 3 (each second: 3 0 1) |",
		"| step that caught it | 1 of 3 (1%) |",
		"| step 1 (100 collectors): started; all applied; completed | 0.10 s; not seen; not seen |",
		"| collectors that reported it FAILED; status.rollout.failed | 100; 100 |",
		"| rollout Events of both edits | RolloutStarted 2, RolledBack 1 |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

func TestFloodTable(t *testing.T) {
	res := &floodResult{
		opts:      floodOptions{n: 7000, others: 100, hold: 20 * time.Second, retry: true},
		limit:     "unset: the default, 100 with no pods scheduled",
		rssBefore: 60e6, rssPeak: 200e6, rssHWM: 210e6, rssEnd: 150e6, rssAfter: 120e6, heapBefore: 20e6, heapEnd: -1, heapAfter: 30e6,
		accepted: 100, refused: 6900, refusedCap: 99, refusedUpgrade: 6800, otherErrors: map[string]int{"unauthorized": 1},
		handshakes: 60000, refusals: 59000, answered: 3 * time.Second,
		editBefore: 100 * time.Millisecond, editDuring: 300 * time.Millisecond,
		probeBefore: loadgen.Probes{Sent: 10, Answered: 10, Max: int64(time.Millisecond), Buckets: []int64{10}},
		probeDuring: loadgen.Probes{Sent: 20, Answered: 19, Max: int64(400 * time.Millisecond), Waiting: int64(600 * time.Millisecond),
			Buckets: []int64{0, 0, 0, 0, 0, 0, 10, 0, 9}},
		connectedEnd: 100, connectedAf: 100, statusConnected: 100, statusOK: 100,
		tooMany: [2]int{20, 20}, tooManyNote: "288 collectors were refused", load: "2.0, 1.5, 1.0",
		window: measured{Requests: apirequests.Counts{{Verb: "POST", Resource: "events"}: 20}}, peakWrites: []int64{2, 1},
	}
	var b bytes.Buffer
	res.print(&b)
	for _, want := range []string{
		"### Flood: 7,000 connections with one pod credential, distinct instance UIDs, the largest descriptions (refused agents reconnect as opamp-go does); 100 other collectors",
		"| 60 MB; 200 MB (210 MB); 150 MB; 120 MB |",
		"| operator heap in use: before; end of the flood; after | 20 MB; ?; 30 MB |",
		"| flood agents accepted; refused (last with the spec.maxCollectors message; at the upgrade, 503), of 7,000 | 100; 6,900 (99; 6,800) |",
		`| refused with other messages | 1 × "unauthorized" |`,
		"| 60,000; 59,000 (2950 a second) |",
		"| other group: round trip of a status message, during the flood | 19 of 20 answered; ≤ 100 ms median, ≤ 400 ms p99, 400 ms longest; oldest unanswered 600 ms |",
		"| 1.00 (0.00, 1.00, 0.00); 2 (each second: 2 1) |",
		"| TooManyCollectors Events: objects; occurrences | 20; 20 |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}
