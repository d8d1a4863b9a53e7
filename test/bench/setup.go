package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
	"github.com/linkmesh/linkmesh-operator/test/framework/manager"
)

// The bench's objects.
const (
	benchNamespace = "bench"
	// configA is the first config; configB the edit.
	configA = `receivers: {otlp: {protocols: {grpc: {endpoint: 0.0.0.0:4317}}}}
exporters: {debug: {}}
service: {pipelines: {traces: {receivers: [otlp], exporters: [debug]}}}
`
	configB = `receivers: {otlp: {protocols: {grpc: {endpoint: 0.0.0.0:4317}}}}
exporters: {debug: {verbosity: basic}}
service: {pipelines: {traces: {receivers: [otlp], exporters: [debug]}}}
`
)

// configHash is the hex config_hash the operator sends with a config: the sha256 of its bytes.
func configHash(config string) string {
	sum := sha256.Sum256([]byte(config))
	return hex.EncodeToString(sum[:])
}

// env is one scenario's world: a fresh control plane, the bench's view of it, the operator replicas and
// whatever else the scenario starts, stopped in reverse order by close.
type env struct {
	o        *options
	dir      string
	cp       *controlPlane
	cl       *cluster
	cleanups []func()
}

// newEnv starts a control plane and the bench's namespace in a directory of its own.
func newEnv(ctx context.Context, o *options, name string) (_ *env, err error) {
	e := &env{o: o, dir: filepath.Join(o.tmpDir, name)}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	if err := os.MkdirAll(e.dir, 0o700); err != nil {
		return nil, err
	}
	progress("%s: starting kube-apiserver and etcd", name)
	if e.cp, err = startControlPlane(ctx, o.self, e.dir, o.crds); err != nil {
		return nil, err
	}
	e.cp.DiscardLines()
	e.defer_(e.cp.Stop)
	if e.cl, err = newCluster(ctx, e.cp.Kubeconfig(benchKubeconfig), benchNamespace); err != nil {
		return nil, err
	}
	e.defer_(e.cl.Close)
	if err := e.cl.createNamespace(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *env) defer_(f func()) { e.cleanups = append(e.cleanups, f) }

// close stops everything the scenario started, last first.
func (e *env) close() {
	for i := len(e.cleanups) - 1; i >= 0; i-- {
		e.cleanups[i]()
	}
	e.cleanups = nil
}

// startOperator starts a manager replica; close stops it if the scenario has not.
func (e *env) startOperator(ctx context.Context, name string, ports manager.Ports, args ...string) (*operator, error) {
	op, err := startOperator(ctx, e.o.manager, name, e.dir, e.cp.Kubeconfig(operatorKubeconfig), ports, args...)
	if err != nil {
		return nil, err
	}
	e.defer_(op.Stop)
	return op, nil
}

// startLoads starts load generators; close stops them if the scenario has not.
func (e *env) startLoads(ctx context.Context, s loadSpec) (*loads, error) {
	if s.perProcess == 0 {
		s.perProcess = e.o.perProcess
	}
	s.applyDelay, s.heartbeat = e.o.applyDelay, e.o.heartbeat
	l, err := startLoads(ctx, e.o.self, e.dir, s)
	if err != nil {
		return nil, err
	}
	e.defer_(l.Stop)
	return l, nil
}

// fleetCollector is the ManagedCollector of the single-operator scenarios: DaemonSet mode, configA.
const fleetCollector = "fleet"

// startFleet starts the operator and n simulated pods of fleetCollector against it, in load generator
// processes named "load"; scenario names the progress line.
func (e *env) startFleet(ctx context.Context, scenario string, ports manager.Ports, n int) (*operator, *loads, error) {
	progress("%s: starting the operator", scenario)
	op, err := e.startOperator(ctx, "manager", ports)
	if err != nil {
		return nil, nil, err
	}
	if err := e.createCollector(ctx, fleetCollector, v1alpha1.ModeDaemonSet, n); err != nil {
		return nil, nil, err
	}
	token, err := e.collectorToken(ctx, fleetCollector)
	if err != nil {
		return nil, nil, err
	}
	tokenFile, err := e.writeTokens("collector.token", []string{token})
	if err != nil {
		return nil, nil, err
	}
	ld, err := e.startLoads(ctx, loadSpec{name: "load", servers: []string{ports.OpAMP}, tokenFile: tokenFile, count: n, pods: true, prefix: "fleet"})
	if err != nil {
		return nil, nil, err
	}
	return op, ld, nil
}

// createCollector creates a ManagedCollector and waits until the operator accepted its config. The
// simulated pods of a DaemonSet ManagedCollector are no pods the API server scheduled (nothing is
// desired), so pods > 0 lets that many connect (spec.maxCollectors); an External one counts its
// EnrollmentTokens.
func (e *env) createCollector(ctx context.Context, name string, mode v1alpha1.CollectorMode, pods int) error {
	spec := v1alpha1.ManagedCollectorSpec{Mode: mode, Config: configA}
	if pods > 0 {
		limit := int32(pods)
		spec.MaxCollectors = &limit
	}
	return e.createCollectorSpec(ctx, name, spec)
}

// createCollectorSpec creates a ManagedCollector with spec and waits until the operator accepted its config.
func (e *env) createCollectorSpec(ctx context.Context, name string, spec v1alpha1.ManagedCollectorSpec) error {
	mc := &v1alpha1.ManagedCollector{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: benchNamespace}, Spec: spec}
	if err := e.cl.client.Create(ctx, mc); err != nil {
		return fmt.Errorf("creating the ManagedCollector %s: %w", name, err)
	}
	hash := configHash(spec.Config)
	_, err := e.cl.when(ctx, fmt.Sprintf("the operator accepting the config of %s", name), e.o.timeout, func() bool {
		mc := e.cl.collectorLocked(name)
		return mc != nil && mc.Status.ConfigHash == hash && mc.Status.ObservedGeneration == mc.Generation
	}, e.cl.statusText(name))
	return err
}

// collectorToken reads the pods' bearer token of a DaemonSet ManagedCollector.
func (e *env) collectorToken(ctx context.Context, name string) (string, error) {
	var token string
	err := waitUntil(ctx, "the collector credentials Secret", e.o.timeout, e.cl.changed.Wait, func() bool {
		var s corev1.Secret
		if err := e.cl.client.Get(ctx, client.ObjectKey{Namespace: benchNamespace, Name: naming.CredentialsSecret(name)}, &s); err != nil {
			return false
		}
		token = string(s.Data[naming.CollectorTokenKey])
		return token != ""
	}, func() string {
		return "no Secret " + naming.CredentialsSecret(name) + " with " + naming.CollectorTokenKey
	})
	return token, err
}

// writeTokens writes tokens into a file only the bench's user can read, for the load generators.
func (e *env) writeTokens(name string, tokens []string) (string, error) {
	path := filepath.Join(e.dir, name)
	return path, os.WriteFile(path, []byte(strings.Join(tokens, "\n")+"\n"), 0o600)
}

// editConfig sets spec.config with a merge patch, which needs no read first.
func (e *env) editConfig(ctx context.Context, name, config string) error {
	return e.patchSpec(ctx, name, "spec.config", map[string]any{"config": config})
}

// patchSpec merges fields into the spec of the ManagedCollector name; what names them in an error.
func (e *env) patchSpec(ctx context.Context, name, what string, fields map[string]any) error {
	patch, err := json.Marshal(map[string]any{"spec": fields})
	if err != nil {
		return err
	}
	mc := &v1alpha1.ManagedCollector{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: benchNamespace}}
	if err := e.cl.client.Patch(ctx, mc, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("editing %s of %s: %w", what, name, err)
	}
	return nil
}

// sleep waits d unless ctx ends first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
