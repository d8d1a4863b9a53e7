package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/test/bench/apirequests"
	"github.com/linkmesh/linkmesh-operator/test/bench/loadgen"
	"github.com/linkmesh/linkmesh-operator/test/framework/manager"
)

// enrollResult is the enrollment scenario's table.
type enrollResult struct {
	n int
	// create is how long the bench took to create the tokens and the operator their Secrets.
	create time.Duration
	// From the start of the hosts: all tokens Redeemed, all hosts running the config, status showing all.
	redeemed, configured, status time.Duration
	window                       measured
}

// runEnrollment: an External ManagedCollector and n EnrollmentTokens; n hosts connect at once, each with
// its own token.
func runEnrollment(ctx context.Context, o *options, n int) (*enrollResult, error) {
	e, err := newEnv(ctx, o, "enrollment")
	if err != nil {
		return nil, err
	}
	defer e.close()
	res := &enrollResult{n: n}
	ports, err := manager.NewPorts(false)
	if err != nil {
		return nil, err
	}
	progress("enrollment: starting the operator")
	op, err := e.startOperator(ctx, "manager", ports)
	if err != nil {
		return nil, err
	}
	const mc = "hosts"
	if err := e.createCollector(ctx, mc, v1alpha1.ModeExternal, 0); err != nil {
		return nil, err
	}

	progress("enrollment: creating %d EnrollmentTokens", n)
	start := time.Now()
	if err := createTokens(ctx, e.cl, mc, n); err != nil {
		return nil, err
	}
	if _, err := e.cl.when(ctx, fmt.Sprintf("all %d EnrollmentTokens naming their Secret", n), o.timeout, func() bool {
		k := 0
		for _, t := range e.cl.tokens {
			if t.Status.SecretName != "" && t.Status.Phase == v1alpha1.TokenPending {
				k++
			}
		}
		return k == n
	}, func() string {
		e.cl.mu.Lock()
		defer e.cl.mu.Unlock()
		return fmt.Sprintf("%d EnrollmentTokens seen", len(e.cl.tokens))
	}); err != nil {
		return nil, err
	}
	tokens, err := readTokenSecrets(ctx, e.cl, n)
	if err != nil {
		return nil, err
	}
	res.create = time.Since(start)
	tokenFile, err := e.writeTokens("enrollment.tokens", tokens)
	if err != nil {
		return nil, err
	}
	ld, err := e.startLoads(ctx, loadSpec{name: "load", servers: []string{ports.OpAMP}, tokenFile: tokenFile, count: n, prefix: "host"})
	if err != nil {
		return nil, err
	}

	progress("enrollment: %d hosts connect at once", n)
	hash := configHash(configA)
	w, err := openWindow(ctx, e.cl, op.Pid())
	if err != nil {
		return nil, err
	}
	t0, err := ld.Start()
	if err != nil {
		return nil, err
	}
	at, err := e.cl.when(ctx, fmt.Sprintf("all %d EnrollmentTokens Redeemed", n), o.timeout, func() bool { return e.cl.redeemedLocked() == n },
		func() string {
			e.cl.mu.Lock()
			defer e.cl.mu.Unlock()
			return fmt.Sprintf("%d Redeemed; hosts: %s", e.cl.redeemedLocked(), ld.describe())
		})
	if err != nil {
		return nil, err
	}
	res.redeemed = at.Sub(t0)
	p, err := ld.waitFor(ctx, fmt.Sprintf("all %d hosts running config %.12s", n, hash), o.timeout, func(p loadgen.Progress) bool { return p.Applied[hash] == n })
	if err != nil {
		return nil, err
	}
	res.configured = time.Unix(0, p.LastOutcome[hash]).Sub(t0)
	if at, err = e.cl.statusShows(ctx, mc, hash, n, o.timeout); err != nil {
		return nil, err
	}
	res.status = at.Sub(t0)
	if res.window, err = w.close(ctx, e.cl, op.Pid()); err != nil {
		return nil, err
	}
	return res, nil
}

// createTokens creates n EnrollmentTokens for the ManagedCollector mc, a few at a time.
func createTokens(ctx context.Context, cl *cluster, mc string, n int) error {
	const workers = 16
	next := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				et := &v1alpha1.EnrollmentToken{
					ObjectMeta: metav1.ObjectMeta{Name: tokenName(i), Namespace: benchNamespace},
					Spec: v1alpha1.EnrollmentTokenSpec{
						CollectorRef: v1alpha1.CollectorReference{Name: mc},
						TTL:          &metav1.Duration{Duration: time.Hour},
						Description:  fmt.Sprintf("host-%05d", i),
					},
				}
				if err := cl.client.Create(ctx, et); err != nil {
					errs <- fmt.Errorf("creating the EnrollmentToken %s: %w", et.Name, err)
					return
				}
			}
		})
	}
	var err error
feed:
	for i := range n {
		select {
		case next <- i:
		case err = <-errs:
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return err
}

func tokenName(i int) string { return fmt.Sprintf("host-%05d", i) }

// readTokenSecrets reads the token of every EnrollmentToken, in order, with one LIST.
func readTokenSecrets(ctx context.Context, cl *cluster, n int) ([]string, error) {
	var secrets corev1.SecretList
	if err := cl.client.List(ctx, &secrets, client.InNamespace(benchNamespace)); err != nil {
		return nil, fmt.Errorf("listing the token Secrets: %w", err)
	}
	byName := map[string]string{}
	for _, s := range secrets.Items {
		byName[s.Name] = string(s.Data[v1alpha1.TokenSecretKey])
	}
	cl.mu.Lock()
	defer cl.mu.Unlock()
	tokens := make([]string, n)
	for i := range n {
		et := cl.tokens[tokenName(i)]
		if et == nil || byName[et.Status.SecretName] == "" {
			return nil, fmt.Errorf("no token in the Secret of the EnrollmentToken %s", tokenName(i))
		}
		tokens[i] = byName[et.Status.SecretName]
	}
	return tokens, nil
}

// restartResult is the restart storm's table.
type restartResult struct {
	n int
	// ready is from the SIGKILL until the new replica's OpAMP listener answered /readyz.
	ready time.Duration
	// From ready: the last agent reconnected; the operator's own metric showing all connected and
	// applied; status showing so in a write after the restart.
	back, configured, status time.Duration
	statusSeen               bool
	storm                    measured
}

// cacheReadKinds are the kinds the handshake needs; a GET of one is a read past the informer cache.
var cacheReadKinds = []string{"secrets", "enrollmenttokens", "managedcollectors"}

// runRestart: n collectors connected, the operator killed (SIGKILL) and a new one started on the same
// ports; how soon are all back and configured, and what did the new operator ask the API server?
func runRestart(ctx context.Context, o *options, n int) (*restartResult, error) {
	e, err := newEnv(ctx, o, "restart")
	if err != nil {
		return nil, err
	}
	defer e.close()
	res := &restartResult{n: n}
	ports, err := manager.NewPorts(false)
	if err != nil {
		return nil, err
	}
	op, ld, err := e.startFleet(ctx, "restart", ports, n)
	if err != nil {
		return nil, err
	}
	const mc = fleetCollector
	hash := configHash(configA)
	progress("restart: %d collectors connect", n)
	if _, err := ld.Start(); err != nil {
		return nil, err
	}
	if _, err := ld.waitFor(ctx, fmt.Sprintf("all %d running config %.12s", n, hash), o.timeout, func(p loadgen.Progress) bool { return p.Applied[hash] == n && p.Connected == n }); err != nil {
		return nil, err
	}
	if _, err := e.cl.statusShows(ctx, mc, hash, n, o.timeout); err != nil {
		return nil, err
	}
	if err := sleep(ctx, o.settle); err != nil {
		return nil, err
	}

	progress("restart: SIGKILL the operator, start a new one on the same ports")
	if err := ld.Mark(ctx); err != nil {
		return nil, err
	}
	w, err := openWindow(ctx, e.cl, op.Pid())
	if err != nil {
		return nil, err
	}
	rv := e.cl.Collector(mc).ResourceVersion
	tKill := time.Now()
	op.Kill()
	op2, err := launchOperator(o.manager, "manager-restarted", e.dir, e.cp.Kubeconfig(operatorKubeconfig), ports)
	if err != nil {
		return nil, err
	}
	e.defer_(op2.Stop)
	if err := op2.WaitReady(ctx, "http://"+ports.OpAMP+"/readyz", 2*time.Minute); err != nil {
		return nil, err
	}
	tReady := time.Now()
	res.ready = tReady.Sub(tKill)
	p, err := ld.waitFor(ctx, fmt.Sprintf("all %d reconnected to the new operator", n), o.timeout, func(p loadgen.Progress) bool { return p.Reconnected == n && p.Connected == n })
	if err != nil {
		return nil, err
	}
	res.back = time.Unix(0, p.LastConnect).Sub(tReady)
	var states map[string]int
	err = waitUntil(ctx, fmt.Sprintf("the new operator counting %d connected with config applied", n), o.timeout,
		func() <-chan struct{} { return nil },
		func() bool {
			states, err = op2.AgentStates(ctx, benchNamespace, mc)
			return err == nil && states["connected"] == n && states["config_applied"] == n
		},
		func() string { return fmt.Sprintf("linkmesh_collector_agents %v, %v", states, err) })
	if err != nil {
		return nil, err
	}
	res.configured = time.Since(tReady)
	// The new operator may find status already right and not write it at all: wait a while, not forever.
	at, err := e.cl.when(ctx, "a status write after the restart showing all", 15*time.Second, func() bool {
		m := e.cl.collectorLocked(mc)
		return m != nil && m.ResourceVersion != rv && m.Status.ConfigHash == hash &&
			int(m.Status.Counts.Connected) == n && int(m.Status.Counts.ConfigApplied) == n
	}, e.cl.statusText(mc))
	if err == nil {
		res.status, res.statusSeen = at.Sub(tReady), true
	}
	if res.storm, err = w.close(ctx, e.cl, op2.Pid()); err != nil {
		return nil, err
	}
	// CPU of the new process since it started, not the difference to the killed one's.
	res.storm.CPU = res.storm.Usage.CPU
	return res, nil
}

// pastCache counts the GETs of the kinds the handshake reads: reads that did not come from an informer.
func pastCache(c apirequests.Counts) int64 {
	return c.Total(func(k apirequests.Key) bool {
		if k.Verb != "GET" {
			return false
		}
		for _, r := range cacheReadKinds {
			if k.Resource == r {
				return true
			}
		}
		return false
	})
}
