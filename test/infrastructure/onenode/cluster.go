// Package onenode runs a real one-node Kubernetes on loopback for the real-node suite: etcd, kube-apiserver
// (RBAC and Node authorization), kube-controller-manager, kube-scheduler, containerd with runc and the CNI
// plugins, and a kubelet, all built from the Go module proxy (hack/envtest-binaries.sh,
// hack/node-binaries.sh). Images are imported from docker-archive tarballs, as nothing can be pulled.
//
// The kubelet uses fixed host paths, so there is one cluster per machine, and it needs root. Stop restores
// the host (sysctls, iptables chains, cgroups, mounts, network links, /run/containerd and friends), also
// after a run that was killed before its teardown: the next Start finds the saved state and restores it
// first.
package onenode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// ErrNotRoot is returned by Start for a user other than root: the kubelet and containerd need root.
var ErrNotRoot = errors.New("a one-node Kubernetes needs root (the kubelet and containerd manage cgroups, mounts and network namespaces)")

// ErrBusy is returned by Start while another one-node cluster runs on the machine.
var ErrBusy = errors.New("another one-node cluster is running on this machine (the kubelet's fixed paths allow one)")

// NodeName is the name of the one node.
const NodeName = "linkmesh-node"

// Options of Start.
type Options struct {
	// NodeBin holds kubelet, kube-controller-manager, kube-scheduler, containerd, containerd-shim-runc-v2,
	// ctr, runc and cni/ (the output of hack/node-binaries.sh).
	NodeBin string
	// ControlPlaneBin holds kube-apiserver and etcd (the output of hack/envtest-binaries.sh).
	ControlPlaneBin string
	// Images are docker-archive tarballs imported into containerd before the kubelet starts.
	Images []string
	// SandboxImage is the tag of the pause image, one of Images.
	SandboxImage string
	// Logf reports progress; nil discards it.
	Logf func(format string, args ...any)
}

// Cluster is a running one-node Kubernetes.
type Cluster struct {
	// Kubeconfig is the path of an admin (system:masters) kubeconfig.
	Kubeconfig string
	// Config is the same admin identity for clients.
	Config *rest.Config
	// APIPort is the API server's port on 127.0.0.1, where hostNetwork pods reach it too (there is no
	// kube-proxy for the kubernetes Service's ClusterIP).
	APIPort int

	o     Options
	dir   string
	lock  *os.File
	state *hostState
	procs []*process

	stopOnce sync.Once
	stopErr  error
}

// Start starts the cluster and returns when the node is Ready. On error everything started is stopped and
// the host restored.
func Start(ctx context.Context, o Options) (_ *Cluster, err error) {
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	lock, err := acquireLock()
	if err != nil {
		return nil, err
	}
	// Until the Cluster exists and owns the lock, a failure lets it go.
	var c *Cluster
	defer func() {
		if err != nil && c == nil {
			releaseLock(lock)
		}
	}()
	if prev, err := loadHostState(); err == nil {
		o.Logf("onenode: a previous run did not tear down; restoring the host it recorded first")
		if err := prev.restore(); err != nil {
			return nil, fmt.Errorf("restoring the host after a previous run: %w", err)
		}
	}
	if err := refuseKubernetesHost(); err != nil {
		return nil, err
	}
	exes, err := binaries(o.NodeBin)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "linkmesh-onenode-")
	if err != nil {
		return nil, err
	}
	state, err := takeHostState(dir, exes)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("recording the host's state: %w", err)
	}
	if err := state.save(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("saving the host's state: %w", err)
	}
	c = &Cluster{o: o, dir: dir, state: state, lock: lock}
	defer func() {
		if err != nil {
			// Stop removes the work directory, logs and all: keep their ends in the error.
			var tails []string
			for _, p := range c.procs {
				tails = append(tails, fmt.Sprintf("--- %s log:\n%s", p.name, c.LogTail(p.name, 2000)))
			}
			err = errors.Join(err, errors.New(strings.Join(tails, "\n")), c.Stop())
		}
	}()
	if err := c.start(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context) error {
	began := time.Now()
	for _, d := range []string{"pki", "logs", "etcd", "apiserver", "kubelet", "cni/net.d", "pod-logs"} {
		if err := os.MkdirAll(filepath.Join(c.dir, d), 0o700); err != nil {
			return err
		}
	}
	p, err := newPKI(filepath.Join(c.dir, "pki"))
	if err != nil {
		return err
	}
	ports, err := freePorts(4)
	if err != nil {
		return err
	}
	etcdPort, peerPort, kubeletPort := ports[0], ports[1], ports[3]
	c.APIPort = ports[2]
	server := fmt.Sprintf("https://127.0.0.1:%d", c.APIPort)

	if err := c.startEtcd(ctx, etcdPort, peerPort); err != nil {
		return err
	}
	if err := c.startAPIServer(ctx, p, server, etcdPort); err != nil {
		return err
	}
	c.o.Logf("onenode: API server ready on %s after %s", server, time.Since(began).Round(time.Millisecond))
	if err := c.startContainerd(ctx); err != nil {
		return err
	}
	if err := c.startControllers(p, server); err != nil {
		return err
	}
	if err := c.startKubelet(ctx, p, server, kubeletPort); err != nil {
		return err
	}
	c.o.Logf("onenode: node %s Ready after %s", NodeName, time.Since(began).Round(time.Millisecond))
	return nil
}

func (c *Cluster) startEtcd(ctx context.Context, port, peerPort int) error {
	client := fmt.Sprintf("http://127.0.0.1:%d", port)
	peer := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	if _, err := c.run("etcd", filepath.Join(c.o.ControlPlaneBin, "etcd"), nil,
		"--name=onenode", "--data-dir="+filepath.Join(c.dir, "etcd"),
		"--listen-client-urls="+client, "--advertise-client-urls="+client,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer,
		"--initial-cluster=onenode="+peer, "--unsafe-no-fsync=true",
	); err != nil {
		return err
	}
	return c.waitFor(ctx, "etcd", 30*time.Second, func() error {
		resp, err := http.Get(client + "/health")
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	})
}

func (c *Cluster) startAPIServer(ctx context.Context, p *pki, server string, etcdPort int) error {
	loopback := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")}
	certPath, keyPath, err := p.issue("apiserver", identity{
		user: "kube-apiserver", ips: loopback,
		dns: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
	})
	if err != nil {
		return err
	}
	// The API server's client identity towards kubelets (logs, exec); system:masters passes their webhook
	// authorization.
	kcCert, kcKey, err := p.issue("apiserver-kubelet-client", identity{user: "kube-apiserver-kubelet-client", groups: []string{"system:masters"}})
	if err != nil {
		return err
	}
	saKey, saPub, err := p.serviceAccountKey()
	if err != nil {
		return err
	}
	if c.Kubeconfig, err = p.kubeconfig("admin", server, identity{user: "linkmesh-onenode-admin", groups: []string{"system:masters"}}); err != nil {
		return err
	}
	if c.Config, err = clientcmd.BuildConfigFromFlags("", c.Kubeconfig); err != nil {
		return err
	}
	if _, err := c.run("kube-apiserver", filepath.Join(c.o.ControlPlaneBin, "kube-apiserver"), nil,
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", etcdPort),
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port="+strconv.Itoa(c.APIPort),
		"--cert-dir="+filepath.Join(c.dir, "apiserver"),
		"--tls-cert-file="+certPath, "--tls-private-key-file="+keyPath, "--client-ca-file="+p.caPath,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+saPub, "--service-account-signing-key-file="+saKey,
		"--service-cluster-ip-range=10.96.0.0/12",
		"--authorization-mode=Node,RBAC",
		// The default reconciler refuses to publish a loopback address as the kubernetes Service's endpoint.
		"--endpoint-reconciler-type=none",
		"--kubelet-client-certificate="+kcCert, "--kubelet-client-key="+kcKey,
		"--kubelet-preferred-address-types=InternalIP",
		"--allow-privileged=true",
	); err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	return c.waitFor(ctx, "kube-apiserver", 90*time.Second, func() error {
		_, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err
	})
}

func (c *Cluster) startContainerd(ctx context.Context) error {
	cfgPath := filepath.Join(c.dir, "containerd.toml")
	if err := os.WriteFile(cfgPath, []byte(containerdConfig(c.dir, c.o.NodeBin, c.o.SandboxImage)), 0o600); err != nil {
		return err
	}
	cni, err := cniConfig(c.dir)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.dir, "cni", "net.d", "10-onenode.conflist"), cni, 0o600); err != nil {
		return err
	}
	// containerd finds containerd-shim-runc-v2 on its PATH.
	env := []string{"PATH=" + c.o.NodeBin + ":" + os.Getenv("PATH")}
	if _, err := c.run("containerd", filepath.Join(c.o.NodeBin, "containerd"), env, "--config="+cfgPath); err != nil {
		return err
	}
	if err := c.waitFor(ctx, "containerd", 30*time.Second, func() error {
		return c.ctr(ctx, "version")
	}); err != nil {
		return err
	}
	for _, img := range c.o.Images {
		if err := c.ctr(ctx, "images", "import", img); err != nil {
			return fmt.Errorf("importing %s: %w", img, err)
		}
	}
	return nil
}

// ctr runs containerd's client in the CRI's namespace.
func (c *Cluster) ctr(ctx context.Context, args ...string) error {
	args = append([]string{"--address=" + containerdSocket(c.dir), "--namespace=k8s.io"}, args...)
	out, err := exec.CommandContext(ctx, filepath.Join(c.o.NodeBin, "ctr"), args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ctr %v: %w: %s", args, err, out)
	}
	return nil
}

func (c *Cluster) startControllers(p *pki, server string) error {
	kcm, err := p.kubeconfig("controller-manager", server, identity{user: "system:kube-controller-manager"})
	if err != nil {
		return err
	}
	sched, err := p.kubeconfig("scheduler", server, identity{user: "system:kube-scheduler"})
	if err != nil {
		return err
	}
	// The token controllers need a bootstrap-token setup this cluster does not have.
	if _, err := c.run("kube-controller-manager", filepath.Join(c.o.NodeBin, "kube-controller-manager"), nil,
		"--kubeconfig="+kcm, "--leader-elect=false", "--controllers=*,-bootstrapsigner,-tokencleaner",
		// Each controller acts as its own service account, which the bootstrap RBAC policy grants what it needs.
		"--use-service-account-credentials=true",
		"--service-account-private-key-file="+filepath.Join(p.dir, "sa.key"), "--root-ca-file="+p.caPath,
		"--secure-port=0",
	); err != nil {
		return err
	}
	_, err = c.run("kube-scheduler", filepath.Join(c.o.NodeBin, "kube-scheduler"), nil,
		"--kubeconfig="+sched, "--leader-elect=false", "--secure-port=0")
	return err
}

func (c *Cluster) startKubelet(ctx context.Context, p *pki, server string, port int) error {
	kubeconfig, err := p.kubeconfig("kubelet", server, identity{user: "system:node:" + NodeName, groups: []string{"system:nodes"}})
	if err != nil {
		return err
	}
	certPath, keyPath, err := p.issue("kubelet-serving", identity{user: "system:node:" + NodeName, ips: []net.IP{net.ParseIP("127.0.0.1")}, dns: []string{NodeName}})
	if err != nil {
		return err
	}
	cfg, err := kubeletConfig(c.dir, port, p.caPath, certPath, keyPath)
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(c.dir, "kubelet.yaml")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		return err
	}
	root := filepath.Join(c.dir, "kubelet")
	if _, err := c.run("kubelet", filepath.Join(c.o.NodeBin, "kubelet"), nil,
		"--config="+cfgPath, "--kubeconfig="+kubeconfig, "--root-dir="+root, "--cert-dir="+filepath.Join(root, "pki"),
		"--node-ip=127.0.0.1", "--hostname-override="+NodeName,
	); err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	return c.waitFor(ctx, "node "+NodeName+" Ready", 2*time.Minute, func() error {
		node, err := cs.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				if cond.Status == corev1.ConditionTrue {
					return nil
				}
				return fmt.Errorf("%s: %s", cond.Reason, cond.Message)
			}
		}
		return errors.New("no Ready condition yet")
	})
}

// Stop stops every component and restores the host. Its error lists what could not be restored or is
// left over. Safe to call more than once.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		// The kubelet first, so that it restarts no container; then the runtime and what it leaves running
		// (pods, shims), whose watches would otherwise hold the API server's graceful shutdown; the API server
		// and etcd last. A component that ignores SIGTERM is killed: that costs time, not host state.
		for _, name := range []string{"kubelet", "kube-scheduler", "kube-controller-manager", "containerd"} {
			c.stopComponent(name)
		}
		killErr := c.state.killProcesses()
		for _, name := range []string{"kube-apiserver", "etcd"} {
			c.stopComponent(name)
		}
		c.stopErr = errors.Join(killErr, c.state.restore())
		if c.stopErr == nil {
			releaseLock(c.lock)
		} else {
			// Keep the lock file and the state file: the next Start restores what is left.
			_ = c.lock.Close()
		}
	})
	return c.stopErr
}

func (c *Cluster) stopComponent(name string) {
	if p := c.proc(name); p != nil {
		if err := p.stop(15 * time.Second); err != nil {
			c.o.Logf("onenode: %v; killed", err)
		}
	}
}

// LogTail is the end of a component's log (etcd, kube-apiserver, containerd, kube-controller-manager,
// kube-scheduler or kubelet), for a failing test to show before Stop removes it.
func (c *Cluster) LogTail(name string, n int) string {
	b, err := os.ReadFile(filepath.Join(c.dir, "logs", name+".log"))
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Leftovers lists what the cluster left on the host that was not there before it started; empty after a
// clean Stop.
func (c *Cluster) Leftovers() []string { return c.state.leftovers() }

// Process is a living process on the machine.
type Process struct {
	PID     int
	Cmdline []string
	// Cgroups is /proc/<pid>/cgroup: a pod's processes are under kubepods/.../pod<UID>.
	Cgroups string
}

// Processes lists the living (not zombie) processes on the machine whose first argument is argv0, such as a
// collector that outlived its pod.
func Processes(argv0 string) []Process {
	var out []Process
	for _, p := range livingProcesses() {
		if len(p.cmdline) > 0 && p.cmdline[0] == argv0 {
			out = append(out, Process{PID: p.pid, Cmdline: p.cmdline, Cgroups: p.cgroups})
		}
	}
	return out
}

// PodLogTail is the end of the logs the kubelet wrote for a pod's containers (there is no `kubectl logs`:
// the node has no address the API server could reach).
func (c *Cluster) PodLogTail(namespace, pod string, n int) string {
	files, _ := filepath.Glob(filepath.Join(c.dir, "pod-logs", namespace+"_"+pod+"_*", "*", "*.log"))
	var out string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if len(b) > n {
			b = b[len(b)-n:]
		}
		out += "== " + f + "\n" + string(b)
	}
	return out
}

// Restored lists what Stop put back on the host (the kubelet's sysctls and iptables chains, mounts, cgroups,
// paths and processes), for the record of a run.
func (c *Cluster) Restored() []string { return c.state.restored }

// lockFile is held for a cluster's life, so that a second Start does not take the first one's saved state
// for a crashed run's and restore the host under it.
const lockFile = "/var/tmp/linkmesh-onenode.lock"

func acquireLock() (*os.File, error) {
	f, err := os.OpenFile(lockFile, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrBusy
		}
		return nil, fmt.Errorf("locking %s: %w", lockFile, err)
	}
	return f, nil
}

// releaseLock removes the lock file while it still holds it, then lets go.
func releaseLock(f *os.File) {
	_ = os.Remove(lockFile)
	_ = f.Close()
}

// refuseKubernetesHost fails on a machine that already runs a kubelet or containerd: teardown kills every
// process in a kubepods cgroup and removes /run/containerd, which there would be someone else's.
func refuseKubernetesHost() error {
	for _, h := range cgroupHierarchies() {
		if _, err := os.Stat(filepath.Join(h, "kubepods")); err == nil {
			return fmt.Errorf("this machine already runs Kubernetes pods (%s exists): the one-node cluster would take them down on teardown", filepath.Join(h, "kubepods"))
		}
	}
	if _, err := os.Stat("/run/containerd"); err == nil {
		return errors.New("this machine already runs containerd (/run/containerd exists): the one-node cluster needs it to itself")
	}
	return nil
}

// waitFor polls check until it succeeds, a component exits, ctx ends or timeout passes.
func (c *Cluster) waitFor(ctx context.Context, what string, timeout time.Duration, check func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if last = check(); last == nil {
			return nil
		}
		for _, p := range c.procs {
			if p.exited() {
				return fmt.Errorf("waiting for %s: %s exited: %w\n%s", what, p.name, p.err, c.LogTail(p.name, 3000))
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last: %w)", what, ctx.Err(), last)
		case <-tick.C:
		}
	}
}

func (c *Cluster) proc(name string) *process {
	for _, p := range c.procs {
		if p.name == name {
			return p
		}
	}
	return nil
}

// process is a component, in its own process group, killed with the test process if that dies first.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func (c *Cluster) run(name, bin string, env []string, args ...string) (*process, error) {
	logFile, err := os.Create(filepath.Join(c.dir, "logs", name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = logFile.Close()
		close(p.done)
	}()
	c.procs = append(c.procs, p)
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group and SIGKILL after grace.
func (p *process) stop(grace time.Duration) error {
	if p.exited() {
		return nil
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("%s did not stop within %s of SIGTERM", p.name, grace)
	}
}

// binaries are the node's executables, by their resolved paths as /proc/<pid>/exe shows them.
func binaries(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == ".lock" {
			return err
		}
		real, err := filepath.EvalSymlinks(path)
		if err != nil {
			return err
		}
		out = append(out, real)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing the node binaries in %s: %w", dir, err)
	}
	return out, nil
}

// freePorts are n distinct ports on 127.0.0.1 that were free a moment ago, for components that cannot be
// told port 0 and report the port they chose.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []io.Closer
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
