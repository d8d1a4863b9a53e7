//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/test/framework/otlptest"
)

// TestDriftIsHealed reproduces what the supervisor's startup race leaves behind, deliberately: the
// collector runs a config without the pushed pipeline while the supervisor reports it applied. Here the
// effective config in the storage directory is replaced by hand and the collector killed, so the supervisor
// restarts it from that file. The operator sees the drift in the effective config and re-applies.
func TestDriftIsHealed(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	out := otlptest.NewSink(t)
	port := freePort(t)
	cfg := otlptest.Pipeline(port, out.URL, "")
	createCollector(t, ns, "drift", v1alpha1.ManagedCollectorSpec{
		Config:     cfg,
		Supervisor: v1alpha1.SupervisorSpec{ConfigApplyTimeout: &metav1.Duration{Duration: 2 * time.Second}},
	})
	node, proc := startNode(t, ns, "drift", nodeDir(t, "drift"))
	g.Eventually(func(g Gomega) {
		g.Expect(cond(getMC(g, ns, "drift"), v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
	}, timeout, interval).Should(Succeed())
	g.Eventually(func() error { return otlptest.SendSpan(port) }, timeout, interval).Should(Succeed())

	// Take the pushed pipeline out of the collector's config file and make the supervisor restart it.
	effective := filepath.Join(node.StorageDir(), "effective.yaml")
	g.Expect(dropPipeline(effective)).To(Succeed())
	collector, err := childOf(proc.Pid())
	g.Expect(err).NotTo(HaveOccurred())
	killed := time.Now()
	g.Expect(syscall.Kill(collector, syscall.SIGKILL)).To(Succeed())

	g.Eventually(func(g Gomega) {
		g.Expect(eventsOf(g, ns, "drift")).To(ContainElement(And(
			HaveField("Reason", v1alpha1.EventConfigDrift),
			HaveField("Note", ContainSubstring(`pipeline "traces"`)),
		)))
	}, timeout, interval).Should(Succeed())
	drifted := time.Since(killed)
	g.Eventually(func(g Gomega) {
		g.Expect(eventsOf(g, ns, "drift")).To(ContainElement(HaveField("Reason", v1alpha1.EventConfigHealed)))
		mc := getMC(g, ns, "drift")
		g.Expect(cond(mc, v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
		g.Expect(mc.Status.Counts.ConfigDrifted).To(BeZero())
	}, timeout, interval).Should(Succeed())
	t.Logf("MEASURE collector restarted without the pipeline -> ConfigDrift: %v; -> ConfigHealed and Ready: %v", drifted, time.Since(killed))

	// The pipeline runs again.
	before := out.Traces()
	g.Eventually(func() error { return otlptest.SendSpan(port) }, timeout, interval).Should(Succeed())
	g.Eventually(out.Traces, timeout, interval).Should(BeNumerically(">", before))
}

// dropPipeline rewrites a supervisor-composed config so that it keeps only the supervisor's own pieces and a
// nop pipeline: what the supervisor's empty first composition produces.
func dropPipeline(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		return err
	}
	service, _ := cfg["service"].(map[string]any)
	if service == nil {
		return fmt.Errorf("%s has no service", path)
	}
	cfg["receivers"] = map[string]any{"nop": nil}
	cfg["exporters"] = map[string]any{"nop": nil}
	delete(cfg, "processors")
	service["pipelines"] = map[string]any{"traces/nop": map[string]any{"receivers": []string{"nop"}, "exporters": []string{"nop"}}}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o600)
}

// childOf is the only child process of pid: the supervisor's collector. Go starts children from any of its
// threads, so every task's children list is read.
func childOf(pid int) (int, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	if err != nil {
		return 0, err
	}
	var children []string
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		children = append(children, strings.Fields(string(b))...)
	}
	if len(children) != 1 {
		return 0, fmt.Errorf("supervisor %d has children %v, want one collector", pid, children)
	}
	return strconv.Atoi(children[0])
}
