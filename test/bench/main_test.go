package main

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/test/bench/apirequests"
	"github.com/linkmesh/linkmesh-operator/test/bench/loadgen"
)

func TestParseOptionsRefusesBadFlags(t *testing.T) {
	t.Setenv("KUBEBUILDER_ASSETS", t.TempDir())
	crds := "-crds=" + t.TempDir()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{crds, "-n", "1000,x"}, `-n: "x" is not a positive number of collectors`},
		{[]string{crds, "-n", "0"}, `-n: "0" is not a positive number`},
		{[]string{crds, "-scenarios", "fleet,rollouts"}, `unknown scenario "rollouts"`},
		{[]string{crds, "-rollout-n", "0"}, "-rollout-n 0: between 1 and 15000"},
		{[]string{crds, "-rollout-n", "15001"}, "-rollout-n 15001: between 1 and 15000"},
		{[]string{crds, "-rollout-bake", "-1s"}, "-rollout-bake -1s: between 0s and 24h"},
		{[]string{crds, "-rollout-steps", "1%,10%"}, `-rollout-steps "1%,10%": the last step must be 100%`},
		{[]string{crds, "-rollout-steps", "0,100%"}, `-rollout-steps: "0" is neither a count of at least 1 nor a percentage`},
		{[]string{crds, "-rollout-steps", "101%,100%"}, `-rollout-steps: "101%" is not a percentage from 1% to 100%`},
		{[]string{crds, "-rollout-steps", "ten,100%"}, `-rollout-steps: "ten" is neither a count`},
		{[]string{crds, "-rollout-fail-fraction", "0"}, "-rollout-fail-fraction 0: more than 0, at most 1"},
		{[]string{crds, "-rollout-fail-by", "uid"}, `-rollout-fail-by "uid": rank or index`},
		{[]string{crds, "-flood-n", "0"}, "-flood-n 0: between 1 and 15000"},
		{[]string{crds, "-flood-others", "0"}, "-flood-others 0: between 1 and 5000"},
		{[]string{crds, "-flood-max", "-1"}, "-flood-max -1: 0 (the default) or more"},
		{[]string{crds, "-flood-hold", "0s"}, "-flood-hold 0s must be positive"},
		{[]string{crds, "-replicas-n", "20001"}, "-replicas-n 20001: between 1 and 20000"},
		{[]string{crds, "-replicas-kill", "both"}, `-replicas-kill "both": other or leader`},
		{[]string{crds, "-per-process", "10000"}, "-per-process 10000: between 1 and 9000"},
		{[]string{crds, "-enroll-n", "0"}, "-enroll-n and -restart-n must be positive"},
		{[]string{"-crds", "/nonexistent"}, "-crds: stat /nonexistent"},
		{[]string{crds, "extra"}, `unexpected arguments ["extra"]`},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args[1:], " "), func(t *testing.T) {
			_, err := parseOptions(c.args)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("parseOptions(%q) = %v, want an error with %q", c.args, err, c.want)
			}
		})
	}

	t.Setenv("KUBEBUILDER_ASSETS", "")
	if _, err := parseOptions([]string{crds}); err == nil || !strings.Contains(err.Error(), "KUBEBUILDER_ASSETS is not set") {
		t.Fatalf("without KUBEBUILDER_ASSETS: %v", err)
	}
}

func TestParseOptionsDefaultsRunEveryScenario(t *testing.T) {
	t.Setenv("KUBEBUILDER_ASSETS", t.TempDir())
	o, err := parseOptions([]string{"-crds", t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{scenarioFleet, scenarioEnrollment, scenarioRestart, scenarioReplicas, scenarioRollout, scenarioFlood} {
		if !o.scenarios[s] {
			t.Errorf("the default scenarios lack %s", s)
		}
	}
	want := []intstr.IntOrString{intstr.FromString("1%"), intstr.FromString("10%"), intstr.FromString("100%")}
	if !reflect.DeepEqual(o.rollout.steps, want) || o.rollout.n != 10000 || o.rollout.bake != 10*time.Second || o.rollout.failBy != failByRank {
		t.Errorf("rollout options = %+v", o.rollout)
	}
	if o.flood.n != 7000 || o.flood.others != 100 || !o.flood.retry {
		t.Errorf("flood options = %+v", o.flood)
	}
}

func TestParseStepsTakesCountsAndPercentages(t *testing.T) {
	steps, err := parseSteps("1, 10%,100%")
	if err != nil {
		t.Fatal(err)
	}
	want := []intstr.IntOrString{intstr.FromInt32(1), intstr.FromString("10%"), intstr.FromString("100%")}
	if !reflect.DeepEqual(steps, want) {
		t.Fatalf("parseSteps = %v, want %v", steps, want)
	}
}

func TestParseOptionsSmokeHasNoFloor(t *testing.T) {
	t.Setenv("KUBEBUILDER_ASSETS", t.TempDir())
	o, err := parseOptions([]string{"-crds", t.TempDir(), "-smoke", "-n", "500", "-scenarios", "fleet"})
	if err != nil {
		t.Fatal(err)
	}
	if o.floor || !o.smoke || len(o.sizes) != 1 || o.sizes[0] != 500 || !o.scenarios[scenarioFleet] || o.scenarios[scenarioRestart] {
		t.Fatalf("options = %+v", o)
	}
}

// TestSteadyWritesOfOwnedObjectsFailTheSmoke: a write of a Secret, ConfigMap or DaemonSet in the ramp or the
// steady window is a smoke failure, whatever its verb; a status write or an Event is not.
func TestSteadyWritesOfOwnedObjectsFailTheSmoke(t *testing.T) {
	res := &fleetResult{n: 2, ramp: apirequests.Counts{
		{Verb: "APPLY", Resource: "configmaps"}:                               1,
		{Verb: "PATCH", Resource: "managedcollectors", Subresource: "status"}: 3,
	}, steadyW: apirequests.Counts{
		{Verb: "APPLY", Resource: "secrets"}:                                  1,
		{Verb: "PUT", Resource: "daemonsets"}:                                 2,
		{Verb: "GET", Resource: "configmaps"}:                                 5,
		{Verb: "PATCH", Resource: "managedcollectors", Subresource: "status"}: 1,
		{Verb: "POST", Resource: "events"}:                                    1,
	}}
	mc := collectorWithCounts(2, 2)
	res.checkSteady(mc, progressOf(2, 2, "h"), "h")
	want := []string{
		"in the ramp the operator wrote owned objects: 1 APPLY configmaps",
		"in the steady window the operator wrote owned objects: 2 PUT daemonsets",
		"in the steady window the operator wrote owned objects: 1 APPLY secrets",
	}
	if strings.Join(res.failures, "\n") != strings.Join(want, "\n") {
		t.Fatalf("failures = %q, want %q", res.failures, want)
	}
}

// TestSteadyCountsMustBeExact: more collectors in status than exist is as wrong as fewer.
func TestSteadyCountsMustBeExact(t *testing.T) {
	res := &fleetResult{n: 2, steadyW: apirequests.Counts{}}
	res.checkSteady(collectorWithCounts(3, 2), progressOf(2, 1, "h"), "h")
	if len(res.failures) != 2 ||
		!strings.Contains(res.failures[0], "status counts connected 3, configApplied 2") ||
		!strings.Contains(res.failures[1], "2 agents are connected and 1 run config h") {
		t.Fatalf("failures = %q", res.failures)
	}
}

func TestFleetTableWithFloor(t *testing.T) {
	res := &fleetResult{
		n: 10000, processes: 2, steady: 10 * time.Second,
		op:        side{Connected: 5 * time.Second, Configured: 6 * time.Second, FanOut: time.Second, RSS: 500e6, Peak: 510e6, CPURamp: 4},
		floor:     &side{Connected: 4 * time.Second, Configured: 4 * time.Second, FanOut: 500 * time.Millisecond, RSS: 250e6, Peak: 250e6, CPURamp: 2},
		statusAll: 7 * time.Second,
		ramp:      apirequests.Counts{{Verb: "POST", Resource: "events"}: 3, {Verb: "PATCH", Resource: "managedcollectors", Subresource: "status"}: 4},
	}
	var b bytes.Buffer
	res.print(&b)
	for _, want := range []string{
		"### 10,000 collectors (2 load generator processes)",
		"| all configured | 6.00 s | 4.00 s | 1.50× |",
		"| edit reaches all | 1.00 s | 0.50 s | 2.00× |",
		"| RSS after the steady window (peak) | 500 MB (510 MB) | 250 MB (250 MB) | 2.00× |",
		"| RSS per collector | 50.0 KB | 25.0 KB | 2.00× |",
		"| API requests in the ramp | 4 PATCH managedcollectors/status, 3 POST events |  |  |",
		"| API requests in the steady window (10s) | none |  |  |",
		"| Events written: ramp, steady, fan-out | 3, 0, 0 |  |  |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

func collectorWithCounts(connected, applied int32) *v1alpha1.ManagedCollector {
	return &v1alpha1.ManagedCollector{Status: v1alpha1.ManagedCollectorStatus{
		Counts: v1alpha1.AgentCounts{Connected: connected, ConfigApplied: applied},
	}}
}

func progressOf(connected, applied int, hash string) loadgen.Progress {
	return loadgen.Progress{Agents: connected, Connected: connected, Applied: map[string]int{hash: applied}}
}
