// Package localagent runs the upstream opampsupervisor on this machine the way a ManagedCollector's pod runs
// it: with the supervisor.yaml from the rendered ConfigMap and the token from the Secret, changing only what a
// pod's filesystem decides (the collector's path and the storage directory). The demo and the end-to-end
// tests use it to play a node where no kubelet runs.
package localagent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/linkmesh/linkmesh-operator/internal/manifests"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
)

// Binaries are the upstream supervisor and a collector built for this machine.
type Binaries struct {
	Supervisor string
	Collector  string
}

// Node is one supervisor's files: its config, its storage directory and its log.
type Node struct {
	// Dir holds supervisor.yaml, storage/ and supervisor.log.
	Dir string
	// Env is what the pod's container would have in its environment.
	Env []string
	bin Binaries
	// storage overrides Dir/storage.
	storage string
}

// ConfigPath is the supervisor.yaml the supervisor reads.
func (n *Node) ConfigPath() string { return filepath.Join(n.Dir, "supervisor.yaml") }

// StorageDir is the supervisor's storage directory; it keeps the instance UID across restarts.
func (n *Node) StorageDir() string {
	if n.storage != "" {
		return n.storage
	}
	return filepath.Join(n.Dir, "storage")
}

// LogPath collects the supervisor's and its collector's output.
func (n *Node) LogPath() string { return filepath.Join(n.Dir, "supervisor.log") }

// FromCluster prepares a node for the ManagedCollector key from its rendered ConfigMap and Secret, as a pod
// named podName on node nodeName would see them.
func FromCluster(ctx context.Context, c client.Reader, key types.NamespacedName, dir string, bin Binaries, nodeName, podName string) (*Node, error) {
	cm := &corev1.ConfigMap{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: naming.SupervisorConfigMap(key.Name)}, cm); err != nil {
		return nil, fmt.Errorf("reading the supervisor ConfigMap: %w", err)
	}
	secret := &corev1.Secret{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: naming.CredentialsSecret(key.Name)}, secret); err != nil {
		return nil, fmt.Errorf("reading the credentials Secret: %w", err)
	}
	env := []string{
		manifests.EnvCollectorToken + "=" + string(secret.Data[naming.CollectorTokenKey]),
		manifests.EnvNodeName + "=" + nodeName,
		manifests.EnvPodName + "=" + podName,
	}
	return New(dir, []byte(cm.Data[naming.SupervisorConfigKey]), env, bin)
}

// New prepares a node from a supervisor.yaml, rewriting agent.executable and storage.directory for this
// machine.
func New(dir string, supervisorYAML []byte, env []string, bin Binaries) (*Node, error) {
	// The supervisor runs in dir, so every path it is given must not depend on the caller's directory.
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	return newNode(&Node{Dir: dir, Env: env, bin: bin}, supervisorYAML)
}

// Installed prepares a node from what install-opamp.sh --root left under root: its supervisor.yaml with
// agent.executable and storage.directory rebased to root, and the binaries it installed. The rebased copy is
// root/supervisor.yaml; the storage directory is the installed one, so the instance UID the supervisor
// keeps there is the one a second run of the installer finds.
func Installed(root string) (*Node, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(root, "etc", "otelcol-supervisor", "supervisor.yaml"))
	if err != nil {
		return nil, fmt.Errorf("reading the installed supervisor.yaml: %w", err)
	}
	var cfg struct {
		Agent struct {
			Executable string `json:"executable"`
		} `json:"agent"`
		Storage struct {
			Directory string `json:"directory"`
		} `json:"storage"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("parsing the installed supervisor.yaml: %w", err)
	}
	n := &Node{
		Dir:     root,
		bin:     Binaries{Supervisor: filepath.Join(root, "usr", "local", "bin", "opampsupervisor"), Collector: filepath.Join(root, cfg.Agent.Executable)},
		storage: filepath.Join(root, cfg.Storage.Directory),
	}
	return newNode(n, b)
}

func newNode(n *Node, supervisorYAML []byte) (*Node, error) {
	var cfg map[string]any
	if err := yaml.Unmarshal(supervisorYAML, &cfg); err != nil {
		return nil, fmt.Errorf("parsing supervisor.yaml: %w", err)
	}
	agent, _ := cfg["agent"].(map[string]any)
	storage, _ := cfg["storage"].(map[string]any)
	if agent == nil || storage == nil {
		return nil, errors.New("supervisor.yaml has no agent or storage section")
	}
	agent["executable"] = n.bin.Collector
	storage["directory"] = n.StorageDir()
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(n.StorageDir(), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(n.ConfigPath(), out, 0o600); err != nil {
		return nil, err
	}
	return n, nil
}

// Process is a running supervisor with its collector, in a process group of their own.
type Process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start runs the supervisor. Stop it with Stop; it is not tied to ctx, so that a caller can restart the
// operator under it.
func (n *Node) Start() (*Process, error) {
	// A SIGINT that this process ignores would be ignored by the supervisor's collector too, and every
	// collector stop would stall until the supervisor's kill timeout. Handling it here makes exec reset it
	// to the default in the child.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGINT)

	logf, err := os.OpenFile(n.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(n.bin.Supervisor, "--config", n.ConfigPath())
	cmd.Dir = n.Dir
	cmd.Env = append(os.Environ(), n.Env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so that Stop can reach the collector even if the supervisor dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("starting %s: %w", n.bin.Supervisor, err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = logf.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid is the supervisor's process ID, which is also its process group ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited is closed when the supervisor has exited.
func (p *Process) Exited() <-chan struct{} { return p.done }

// Stop sends SIGINT, the only signal on which the supervisor stops its collector gracefully, waits up to
// grace, then kills whatever is left of the process group.
func (p *Process) Stop(grace time.Duration) error {
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(pgid, syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(grace):
	}
	// The collector may outlive a supervisor that was killed; the group catches it.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-p.done
	var exit *exec.ExitError
	if p.err != nil && !errors.As(p.err, &exit) {
		return p.err
	}
	return nil
}
