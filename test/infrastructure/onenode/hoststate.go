package onenode

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// The kubelet, containerd and the CNI plugins change the machine outside the cluster's work directory. A
// hostState records the machine before the cluster starts, is saved to stateFile (so a run killed before
// its teardown is cleaned up by the next one), and restore puts the machine back; leftovers then lists
// whatever still differs, so a test can prove the host is as it found it.

// stateFile outlives a crashed run; it is not inside any directory a cluster creates.
const stateFile = "/var/tmp/linkmesh-onenode-hoststate.json"

// sysctls the kubelet sets when they differ from what it wants (its setupKernelTunables).
var sysctls = []string{
	"vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
	"kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes",
}

// ownedPaths are fixed host paths the node's components write to although the cluster points every
// configurable path into its work directory: containerd's shim sockets (/run/containerd/s), the kubelet's
// container log links (/var/log/containers) and device-plugin and pod-resources sockets (/var/lib/kubelet),
// hostPath volumes of the tests' ManagedCollectors (/var/lib/linkmesh), mount(8)'s utab (/run/mount: the
// kubelet makes its root directory a shared mount), and the defaults of CNI and NRI in case a setting does
// not take. restore removes each that did not exist before.
var ownedPaths = []string{
	"/run/containerd", "/run/netns", "/run/nri", "/run/mount", "/var/lib/cni", "/var/lib/kubelet", "/var/log/pods",
	"/var/log/containers", "/var/lib/linkmesh", "/opt/containerd", "/etc/cni", "/opt/cni",
}

// watchedDirs are listed before and after: a new entry in one of them is reported as a leftover, not removed,
// since something else on the machine may have made it.
var watchedDirs = []string{"/run", "/var/lib", "/var/log", "/opt", "/etc", "/var/tmp"}

// cgroupNames are the top-level cgroups the kubelet (cgroupfs driver) and containerd create.
var cgroupNames = []string{"kubepods", "kubepods.slice", "k8s.io"}

var iptablesTables = []string{"filter", "nat", "mangle", "raw", "security"}

type hostState struct {
	// WorkDir is the cluster's directory, removed on restore.
	WorkDir string `json:"workDir"`
	// Exes are the node's binaries: a process running one of them is the cluster's.
	Exes    []string            `json:"exes"`
	Sysctls map[string]string   `json:"sysctls"`
	Paths   map[string]bool     `json:"paths"`
	Entries map[string][]string `json:"entries"`
	Mounts  []string            `json:"mounts"`
	Links   []string            `json:"links"`
	// Rules are `iptables -S` lines by "<binary> <table>".
	Rules map[string][]string `json:"rules"`
	// Cgroups are the children of each cgroup hierarchy's root.
	Cgroups map[string][]string `json:"cgroups"`

	// restored records what restore did.
	restored []string
}

func (s *hostState) did(format string, args ...any) {
	s.restored = append(s.restored, fmt.Sprintf(format, args...))
}

func takeHostState(workDir string, exes []string) (*hostState, error) {
	s := &hostState{
		WorkDir: workDir, Exes: exes,
		Sysctls: map[string]string{}, Paths: map[string]bool{}, Entries: map[string][]string{},
		Rules: map[string][]string{}, Cgroups: map[string][]string{},
	}
	for _, k := range sysctls {
		v, err := readSysctl(k)
		if err != nil {
			return nil, err
		}
		s.Sysctls[k] = v
	}
	for _, p := range ownedPaths {
		_, err := os.Lstat(p)
		s.Paths[p] = err == nil
	}
	for _, d := range watchedDirs {
		s.Entries[d] = dirNames(d)
	}
	var err error
	if s.Mounts, err = mountPoints(); err != nil {
		return nil, err
	}
	if s.Links, err = linkNames(); err != nil {
		return nil, err
	}
	for key, rules := range iptablesRules() {
		s.Rules[key] = rules
	}
	for _, h := range cgroupHierarchies() {
		s.Cgroups[h] = dirNames(h)
	}
	return s, nil
}

func (s *hostState) save() error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(stateFile, b, 0o600)
}

func loadHostState() (*hostState, error) {
	b, err := os.ReadFile(stateFile)
	if err != nil {
		return nil, err
	}
	s := &hostState{}
	if err := json.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("%s: %w", stateFile, err)
	}
	return s, nil
}

// restore puts the machine back as s found it, as far as the cluster changed it, and removes stateFile once
// nothing is left. Every step runs even when an earlier one fails.
func (s *hostState) restore() error {
	var errs []error
	errs = append(errs, s.killProcesses())
	errs = append(errs, s.unmount())
	errs = append(errs, s.removeCgroups())
	for _, p := range ownedPaths {
		if _, err := os.Lstat(p); err != nil || s.Paths[p] {
			continue
		}
		if err := removeAll(p); err != nil {
			errs = append(errs, err)
			continue
		}
		s.did("removed %s", p)
	}
	if s.WorkDir != "" {
		errs = append(errs, removeAll(s.WorkDir))
	}
	errs = append(errs, s.deleteLinks(), s.restoreRules(), s.restoreSysctls())
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if left := s.leftovers(); len(left) > 0 {
		return fmt.Errorf("left on the host after teardown:\n  %s", strings.Join(left, "\n  "))
	}
	if err := os.Remove(stateFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// leftovers lists what differs from s: processes of the cluster, mounts, network links, iptables rules and
// chains, cgroups, sysctls, and new entries in the watched directories.
func (s *hostState) leftovers() []string {
	var left []string
	for _, p := range s.processes() {
		left = append(left, "process "+p.String())
	}
	mounts, _ := mountPoints()
	for _, m := range newItems(s.Mounts, mounts) {
		left = append(left, "mount "+m)
	}
	links, _ := linkNames()
	for _, l := range newItems(s.Links, links) {
		left = append(left, "network link "+l)
	}
	for key, rules := range iptablesRules() {
		for _, r := range newItems(s.Rules[key], rules) {
			left = append(left, key+" "+r)
		}
	}
	for _, h := range slices.Sorted(maps.Keys(s.Cgroups)) {
		for _, c := range newItems(s.Cgroups[h], dirNames(h)) {
			left = append(left, "cgroup "+filepath.Join(h, c))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(s.Sysctls)) {
		if v, _ := readSysctl(k); v != s.Sysctls[k] {
			left = append(left, fmt.Sprintf("sysctl %s = %s (was %s)", k, v, s.Sysctls[k]))
		}
	}
	for _, d := range slices.Sorted(maps.Keys(s.Entries)) {
		for _, e := range newItems(s.Entries[d], dirNames(d)) {
			if p := filepath.Join(d, e); p != stateFile && p != lockFile {
				left = append(left, "path "+p)
			}
		}
	}
	if s.WorkDir != "" {
		if _, err := os.Lstat(s.WorkDir); err == nil {
			left = append(left, "path "+s.WorkDir)
		}
	}
	return left
}

// proc is a process on the machine.
type proc struct {
	pid     int
	cmdline []string
	exe     string
	cgroups string
}

func (p proc) String() string {
	return fmt.Sprintf("%d %s", p.pid, strings.Join(p.cmdline, " "))
}

// livingProcesses lists the processes on the machine that are not zombies: a process the cluster started
// and that was reparented to PID 1 is reaped slowly here, and a zombie is stopped.
func livingProcesses() []proc {
	ents, _ := os.ReadDir("/proc")
	var out []proc
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		dir := filepath.Join("/proc", e.Name())
		stat, err := os.ReadFile(filepath.Join(dir, "stat"))
		if err != nil {
			continue
		}
		// The state follows the parenthesised command name, which may itself contain ") ".
		if i := bytes.LastIndexByte(stat, ')'); i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' || stat[i+2] == 'X' {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join(dir, "cmdline"))
		exe, _ := os.Readlink(filepath.Join(dir, "exe"))
		cgroups, _ := os.ReadFile(filepath.Join(dir, "cgroup"))
		out = append(out, proc{
			pid: pid, exe: strings.TrimSuffix(exe, " (deleted)"), cgroups: string(cgroups),
			cmdline: strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00"),
		})
	}
	return out
}

// processes are the living processes that belong to the cluster: its binaries, and everything in a pod's
// cgroup.
func (s *hostState) processes() []proc {
	var out []proc
	for _, p := range livingProcesses() {
		if slices.Contains(s.Exes, p.exe) || strings.Contains(p.cgroups, "/kubepods") {
			out = append(out, p)
		}
	}
	return out
}

// killProcesses SIGKILLs the cluster's processes until none is left, for up to 10 s.
func (s *hostState) killProcesses() error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := s.processes()
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes survive SIGKILL: %v", left)
		}
		for _, p := range left {
			s.did("killed process %s", p)
			_ = syscall.Kill(p.pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// unmount detaches, deepest first, the new mounts under the work directory and the owned paths: pod
// volumes, container root filesystems, shm and network namespaces.
func (s *hostState) unmount() error {
	mounts, err := mountPoints()
	if err != nil {
		return err
	}
	roots := []string{s.WorkDir}
	for _, p := range ownedPaths {
		if !s.Paths[p] {
			roots = append(roots, p)
		}
	}
	fresh := newItems(s.Mounts, mounts)
	var errs []error
	for i := len(fresh) - 1; i >= 0; i-- {
		m := fresh[i]
		if !slices.ContainsFunc(roots, func(r string) bool { return r != "" && within(m, r) }) {
			continue
		}
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", m, err))
			continue
		}
		s.did("unmounted %s", m)
	}
	return errors.Join(errs...)
}

// removeCgroups removes the new kubepods (and containerd) cgroup trees, deepest first. Their processes are
// already killed.
func (s *hostState) removeCgroups() error {
	var errs []error
	for _, h := range cgroupHierarchies() {
		for _, c := range newItems(s.Cgroups[h], dirNames(h)) {
			if slices.Contains(cgroupNames, c) {
				errs = append(errs, rmdirTree(filepath.Join(h, c)))
				s.did("removed cgroup tree %s", filepath.Join(h, c))
			}
		}
	}
	return errors.Join(errs...)
}

func rmdirTree(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil //nolint:nilerr // already gone
	}
	var errs []error
	for _, e := range ents {
		if e.IsDir() {
			errs = append(errs, rmdirTree(filepath.Join(dir, e.Name())))
		}
	}
	// A cgroup whose last process just died can be busy for a moment.
	for i := 0; ; i++ {
		err := syscall.Rmdir(dir)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			break
		}
		if i == 50 {
			errs = append(errs, fmt.Errorf("removing cgroup %s: %w", dir, err))
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.Join(errs...)
}

// deleteLinks deletes the CNI bridge and veth ends that appeared since s.
func (s *hostState) deleteLinks() error {
	links, err := linkNames()
	if err != nil {
		return err
	}
	var errs []error
	for _, l := range newItems(s.Links, links) {
		if l == "cni0" || strings.HasPrefix(l, "veth") {
			if out, err := exec.Command("ip", "link", "delete", l).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("ip link delete %s: %w: %s", l, err, out))
				continue
			}
			s.did("deleted network link %s", l)
		}
	}
	return errors.Join(errs...)
}

// restoreRules deletes the iptables rules and chains that appeared since s (the kubelet's KUBE-FIREWALL,
// KUBE-KUBELET-CANARY and KUBE-IPTABLES-HINT), in one iptables-restore --noflush per binary and table.
func (s *hostState) restoreRules() error {
	var errs []error
	for key, rules := range iptablesRules() {
		script := undoRules(s.Rules[key], rules)
		if len(script) == 0 {
			continue
		}
		bin, table, _ := strings.Cut(key, " ")
		cmd := exec.Command(bin+"-restore", "--noflush")
		cmd.Stdin = strings.NewReader("*" + table + "\n" + strings.Join(script, "\n") + "\nCOMMIT\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("%s-restore %s: %w: %s", bin, table, err, out))
			continue
		}
		s.did("%s -t %s: %s", bin, table, strings.Join(script, "; "))
	}
	return errors.Join(errs...)
}

// undoRules is the iptables-restore script that takes one table from its `-S` lines after back to before:
// it deletes the new rules of old chains (last first), then flushes and deletes the new chains. The lines
// keep iptables-save's quoting, which iptables-restore reads.
func undoRules(before, after []string) []string {
	added := newItems(before, after)
	var newChains, script []string
	for _, r := range added {
		if chain, ok := strings.CutPrefix(r, "-N "); ok {
			newChains = append(newChains, chain)
		}
	}
	for _, r := range slices.Backward(added) {
		rest, ok := strings.CutPrefix(r, "-A ")
		if !ok {
			continue
		}
		if chain, _, _ := strings.Cut(rest, " "); !slices.Contains(newChains, chain) {
			script = append(script, "-D "+rest)
		}
	}
	for _, c := range newChains {
		script = append(script, "-F "+c)
	}
	for _, c := range newChains {
		script = append(script, "-X "+c)
	}
	return script
}

func (s *hostState) restoreSysctls() error {
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(s.Sysctls)) {
		if v, err := readSysctl(k); err == nil && v == s.Sysctls[k] {
			continue
		}
		v, _ := readSysctl(k)
		if err := os.WriteFile(sysctlPath(k), []byte(s.Sysctls[k]), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restoring sysctl %s: %w", k, err))
			continue
		}
		s.did("sysctl %s %s -> %s", k, v, s.Sysctls[k])
	}
	return errors.Join(errs...)
}

func sysctlPath(k string) string { return "/proc/sys/" + strings.ReplaceAll(k, ".", "/") }

func readSysctl(k string) (string, error) {
	b, err := os.ReadFile(sysctlPath(k))
	return strings.TrimSpace(string(b)), err
}

func dirNames(d string) []string {
	ents, _ := os.ReadDir(d)
	out := make([]string, 0, len(ents))
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// mountPoints are the mount points of this mount namespace, in mount order.
func mountPoints() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 {
			out = append(out, unescapeMount(fields[4]))
		}
	}
	return out, sc.Err()
}

// unescapeMount undoes mountinfo's octal escapes of space, tab, newline and backslash.
func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

func linkNames() ([]string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(ifs))
	for _, i := range ifs {
		out = append(out, i.Name)
	}
	return out, nil
}

// iptablesRules lists `-S` of every table, by "<binary> <table>", for iptables and ip6tables where installed.
func iptablesRules() map[string][]string {
	out := map[string][]string{}
	for _, bin := range []string{"iptables", "ip6tables"} {
		if _, err := exec.LookPath(bin); err != nil {
			continue
		}
		for _, t := range iptablesTables {
			b, err := exec.Command(bin, "-w", "5", "-t", t, "-S").Output()
			if err != nil {
				continue // the table is not available in this kernel
			}
			out[bin+" "+t] = strings.Split(strings.TrimSpace(string(b)), "\n")
		}
	}
	return out
}

// cgroupHierarchies are the roots of the mounted cgroup hierarchies (v1 controllers and the v2 tree).
func cgroupHierarchies() []string {
	var out []string
	for _, d := range dirNames("/sys/fs/cgroup") {
		p := filepath.Join("/sys/fs/cgroup", d)
		if _, err := os.Stat(filepath.Join(p, "cgroup.procs")); err == nil {
			out = append(out, p)
		}
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.procs"); err == nil {
		out = append(out, "/sys/fs/cgroup")
	}
	return out
}

// newItems are the items of after that are not in before, counted as multisets, in after's order.
func newItems(before, after []string) []string {
	seen := map[string]int{}
	for _, b := range before {
		seen[b]++
	}
	var out []string
	for _, a := range after {
		if seen[a] > 0 {
			seen[a]--
			continue
		}
		out = append(out, a)
	}
	return out
}

func within(path, root string) bool {
	return path == root || strings.HasPrefix(path, strings.TrimSuffix(root, "/")+"/")
}

// removeAll removes a tree, unless something is still mounted inside it: removing through a mount could
// delete what the mount shows (a hostPath, say) rather than the cluster's files.
func removeAll(p string) error {
	mounts, err := mountPoints()
	if err != nil {
		return err
	}
	for _, m := range mounts {
		if within(m, p) {
			return fmt.Errorf("not removing %s: %s is still mounted", p, m)
		}
	}
	if err := os.RemoveAll(p); err != nil {
		return fmt.Errorf("removing %s: %w", p, err)
	}
	return nil
}
