// Package manager runs the operator's manager binary as a process of its own, on loopback ports, against
// a control plane: the benchmark's operator and the replicas of the multi-replica tests. A process of its
// own, not the operator built into the test, so that a replica can be killed with SIGKILL or drained with
// SIGTERM as a pod is.
package manager

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/linkmesh/linkmesh-operator/test/framework/process"
)

// Build builds ./cmd/manager of the module in dir into out.
func Build(ctx context.Context, dir, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/manager")
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/manager: %w\n%s", err, b)
	}
	return nil
}

// Ports are the loopback addresses of one replica. A replica that replaces a killed one keeps them, as a
// restarted pod keeps its Service.
type Ports struct {
	OpAMP, Metrics, Probe, Pprof string
}

// FreePorts picks n free loopback ports. Another process may take one before the operator binds it; the
// operator then fails at start with the address in its error.
func FreePorts(n int) ([]string, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	var out []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("picking a free port: %w", err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	return out, nil
}

// NewPorts picks the ports of a replica; pprof adds the profiling endpoint.
func NewPorts(pprof bool) (Ports, error) {
	p, err := FreePorts(4)
	if err != nil {
		return Ports{}, err
	}
	ports := Ports{OpAMP: p[0], Metrics: p[1], Probe: p[2]}
	if pprof {
		ports.Pprof = p[3]
	}
	return ports, nil
}

// Options say how to run a manager.
type Options struct {
	// Binary is the manager binary (Build).
	Binary string
	// Name names the process; its stderr goes to Dir/Name.log.
	Name, Dir string
	// Kubeconfig reaches the control plane.
	Kubeconfig string
	Ports      Ports
	// Args are further flags, such as --leader-elect.
	Args []string
	// Env is added to the environment.
	Env []string
}

// Manager is a running manager process.
type Manager struct {
	*process.Child
	Ports Ports
}

// Launch starts the manager without waiting for it. Collectors are told its own OpAMP address.
func Launch(o Options) (*Manager, error) {
	args := []string{
		"--opamp-bind-address=" + o.Ports.OpAMP,
		"--metrics-bind-address=" + o.Ports.Metrics,
		"--health-probe-bind-address=" + o.Ports.Probe,
		"--external-url=http://" + o.Ports.OpAMP,
		// The console's fixed loopback port would collide between replicas and with the machine's own.
		"--console-bind-address=0",
	}
	if o.Ports.Pprof != "" {
		args = append(args, "--pprof-bind-address="+o.Ports.Pprof)
	}
	args = append(args, o.Args...)
	env := append([]string{"KUBECONFIG=" + o.Kubeconfig}, o.Env...)
	c, err := process.Start(o.Name, o.Dir, syscall.SIGKILL, env, o.Binary, args...)
	if err != nil {
		return nil, err
	}
	c.DiscardLines()
	return &Manager{Child: c, Ports: o.Ports}, nil
}

// Start launches the manager and waits until its probe says ready, which includes its OpAMP listener
// serving.
func Start(ctx context.Context, o Options) (*Manager, error) {
	m, err := Launch(o)
	if err != nil {
		return nil, err
	}
	if err := m.WaitReady(ctx, "http://"+o.Ports.Probe+"/readyz", 2*time.Minute); err != nil {
		m.Kill()
		return nil, err
	}
	return m, nil
}

// WaitReady polls url every 10 ms until it answers 200.
func (m *Manager) WaitReady(ctx context.Context, url string, timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-m.Done():
			return m.Exited()
		case <-ctx.Done():
			return context.Cause(ctx)
		default:
		}
		if resp, err := client.Get(url); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer 200 at %s within %s; its log is %s", m.Name, url, timeout, m.Log)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// StopGrace is how long Stop waits after SIGTERM: the drain period and the manager's own graceful shutdown
// fit in it.
const StopGrace = 40 * time.Second

// Stop ends the manager with SIGTERM, as Kubernetes does, and kills it after StopGrace.
func (m *Manager) Stop() error { return m.Child.Stop(syscall.SIGTERM, StopGrace) }

// Metrics reads the manager's Prometheus metrics.
func (m *Manager) Metrics(ctx context.Context) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+m.Ports.Metrics+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics of %s: %s", m.Name, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parsing the metrics of %s: %w", m.Name, err)
	}
	return families, nil
}

// Gauges are the values of the gauge name whose labels include labels, one per series.
func Gauges(families map[string]*dto.MetricFamily, name string, labels map[string]string) []float64 {
	var out []float64
series:
	for _, m := range families[name].GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue series
			}
		}
		out = append(out, m.GetGauge().GetValue())
	}
	return out
}

// AgentStates reads linkmesh_collector_agents: the manager's own count, by state, of the collectors
// connected to it for one ManagedCollector.
func (m *Manager) AgentStates(ctx context.Context, namespace, name string) (map[string]int, error) {
	families, err := m.Metrics(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, s := range families["linkmesh_collector_agents"].GetMetric() {
		labels := map[string]string{}
		for _, l := range s.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["namespace"] == namespace && labels["name"] == name {
			out[labels["state"]] = int(s.GetGauge().GetValue())
		}
	}
	return out, nil
}

// Profile saves a pprof profile of the manager into dir: kind is "profile" (CPU, for seconds) or "heap".
// It does nothing when the manager runs without a pprof port.
func (m *Manager) Profile(ctx context.Context, dir, file, kind string, seconds int) error {
	if m.Ports.Pprof == "" {
		return nil
	}
	url := "http://" + m.Ports.Pprof + "/debug/pprof/" + kind
	if kind == "profile" {
		url += "?seconds=" + strconv.Itoa(seconds)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(seconds+30)*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("profiling %s: %w", m.Name, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("profiling %s: %s: %s", m.Name, resp.Status, strings.TrimSpace(string(body)))
	}
	f, err := os.Create(filepath.Join(dir, file))
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
