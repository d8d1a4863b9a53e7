package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// operatorPorts are the loopback addresses of one operator replica. A replica that replaces a killed
// one keeps them, as a restarted pod keeps its Service.
type operatorPorts struct {
	OpAMP, Metrics, Probe, Pprof string
}

// freePorts picks n free loopback ports. Another process may take one before the operator binds it;
// the operator then fails at start with the address in its error.
func freePorts(n int) ([]string, error) {
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

func newOperatorPorts(pprof bool) (operatorPorts, error) {
	p, err := freePorts(4)
	if err != nil {
		return operatorPorts{}, err
	}
	ports := operatorPorts{OpAMP: p[0], Metrics: p[1], Probe: p[2]}
	if pprof {
		ports.Pprof = p[3]
	}
	return ports, nil
}

// operator is a running manager binary.
type operator struct {
	*child
	ports operatorPorts
}

// startOperator runs the manager against the control plane and waits until its probe says ready, which
// includes its OpAMP listener serving.
func startOperator(ctx context.Context, bin, name, dir, kubeconfig string, ports operatorPorts) (*operator, error) {
	op, err := launchOperator(bin, name, dir, kubeconfig, ports)
	if err != nil {
		return nil, err
	}
	if err := waitReady(ctx, op, "http://"+ports.Probe+"/readyz", 2*time.Minute); err != nil {
		op.Kill()
		return nil, err
	}
	return op, nil
}

// launchOperator starts the manager without waiting for it.
func launchOperator(bin, name, dir, kubeconfig string, ports operatorPorts) (*operator, error) {
	args := []string{
		"--opamp-bind-address=" + ports.OpAMP,
		"--metrics-bind-address=" + ports.Metrics,
		"--health-probe-bind-address=" + ports.Probe,
		"--external-url=http://" + ports.OpAMP,
	}
	if ports.Pprof != "" {
		args = append(args, "--pprof-bind-address="+ports.Pprof)
	}
	c, err := startChild(name, dir, syscall.SIGKILL, []string{"KUBECONFIG=" + kubeconfig}, bin, args...)
	if err != nil {
		return nil, err
	}
	drainLines(c)
	return &operator{child: c, ports: ports}, nil
}

// waitReady polls url every 10 ms until it answers 200.
func waitReady(ctx context.Context, op *operator, url string, timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-op.done:
			return op.exited()
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
			return fmt.Errorf("%s did not answer 200 at %s within %s; its log is %s", op.name, url, timeout, op.log)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop ends the operator with SIGTERM, as Kubernetes does, and kills it after 20 s.
func (op *operator) Stop() {
	if err := op.child.Stop(syscall.SIGTERM, 20*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
	}
}

// agentStates reads linkmesh_collector_agents from the operator's metrics: its own count, by state, of
// the collectors connected to it for one ManagedCollector.
func (op *operator) agentStates(ctx context.Context, namespace, name string) (map[string]int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+op.ports.Metrics+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("operator metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parsing the operator's metrics: %w", err)
	}
	out := map[string]int{}
	for _, m := range families["linkmesh_collector_agents"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["namespace"] == namespace && labels["name"] == name {
			out[labels["state"]] = int(m.GetGauge().GetValue())
		}
	}
	return out, nil
}

// profile saves a pprof profile of the operator into dir: kind is "profile" (CPU, for seconds) or "heap".
func (op *operator) profile(ctx context.Context, dir, file, kind string, seconds int) error {
	if op.ports.Pprof == "" {
		return nil
	}
	url := "http://" + op.ports.Pprof + "/debug/pprof/" + kind
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
		return fmt.Errorf("profiling the operator: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("profiling the operator: %s: %s", resp.Status, strings.TrimSpace(string(body)))
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
