//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/downloads"
	"github.com/linkmesh/linkmesh-operator/internal/manifests"
	"github.com/linkmesh/linkmesh-operator/test/framework/otlptest"
	"github.com/linkmesh/linkmesh-operator/test/framework/supervisoryaml"
	"github.com/linkmesh/linkmesh-operator/test/infrastructure/localagent"
)

// installed is one run of the installer.
type installed struct {
	out string
	err error
}

// runInstaller fetches install-opamp.sh from the operator and runs it under dash with --root, as
// `curl -fsSL .../install-opamp.sh | sudo sh -s -- ARGS` would. The script's temporary files go to tmp.
func runInstaller(t *testing.T, label, root, tmp string, args ...string) installed {
	t.Helper()
	dash, err := exec.LookPath("dash")
	if err != nil {
		t.Fatal("dash is needed (apt-get install dash)")
	}
	opMu.Lock()
	base := "http://" + bindAddr
	opMu.Unlock()
	resp, err := http.Get(base + downloads.ScriptPath)
	if err != nil {
		t.Fatal(err)
	}
	script, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", downloads.ScriptPath, resp.Status)
	}
	cmd := exec.Command(dash, append([]string{"-s", "--", "--root", root, "--no-start"}, args...)...)
	cmd.Stdin = bytes.NewReader(script)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "TMPDIR=" + tmp}
	start := time.Now()
	out, err := cmd.CombinedOutput()
	// Not the arguments: they hold the token.
	t.Logf("MEASURE installer, %s: %v", label, time.Since(start).Round(time.Millisecond))
	return installed{out: string(out), err: err}
}

func tree(t *testing.T, dir string) map[string]fs.FileMode {
	t.Helper()
	out := map[string]fs.FileMode{}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = info.Mode()
		return nil
	})
	return out
}

// enrollmentToken creates an EnrollmentToken for collector and returns its token once the Secret holds it.
func enrollmentToken(g Gomega, ns, name, collector string) string {
	ctx := context.Background()
	g.Expect(env.Client.Create(ctx, &v1alpha1.EnrollmentToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.EnrollmentTokenSpec{CollectorRef: v1alpha1.CollectorReference{Name: collector}},
	})).To(Succeed())
	var token string
	g.Eventually(func(g Gomega) {
		et := &v1alpha1.EnrollmentToken{}
		g.Expect(env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, et)).To(Succeed())
		g.Expect(et.Status.Phase).To(Equal(v1alpha1.TokenPending))
		secret := &corev1.Secret{}
		g.Expect(env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: et.Status.SecretName}, secret)).To(Succeed())
		token = string(secret.Data[v1alpha1.TokenSecretKey])
	}, timeout, interval).Should(Succeed())
	return token
}

// TestInstallScriptEnrollsAHost runs the served install-opamp.sh under dash against the operator's mirror of
// the e2e binaries, starts the supervisor it installed, and sees the host join and redeem its token. Then
// the cases that must fail before anything is installed. Each failure must also not print the token.
func TestInstallScriptEnrollsAHost(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	out := otlptest.NewSink(t)
	g.Expect(env.Client.Create(ctx, &v1alpha1.ManagedCollector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hosts"},
		Spec:       v1alpha1.ManagedCollectorSpec{Config: otlptest.Pipeline(freePort(t), out.URL, ""), Mode: v1alpha1.ModeExternal},
	})).To(Succeed())
	token := enrollmentToken(g, ns, "web-01", "hosts")
	// Its status says how to use it: the command this test runs, with a placeholder for the token.
	et := &v1alpha1.EnrollmentToken{}
	g.Expect(env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "web-01"}, et)).To(Succeed())
	opMu.Lock()
	g.Expect(et.Status.InstallCommand).To(Equal("curl -fsSL http://" + bindAddr + downloads.ScriptPath + " | sudo sh -s -- --token <TOKEN>"))
	opMu.Unlock()

	root := filepath.Join(t.TempDir(), "web-01")
	tmp := t.TempDir()
	// The staged supervisor is v0.149.0: the installer says so, and gets the file rendered for it.
	first := runInstaller(t, "first install", root, tmp, "--token", token, "--mirror", "--environment", "e2e",
		"--supervisor-version", manifests.DefaultPodSupervisorVersion)
	g.Expect(first.err).NotTo(HaveOccurred(), first.out)

	files := tree(t, root)
	for name, mode := range map[string]fs.FileMode{
		"usr/local/bin/opampsupervisor":               0o755,
		"usr/local/bin/otelcol-contrib":               0o755,
		"etc/otelcol-supervisor":                      fs.ModeDir | 0o700,
		"etc/otelcol-supervisor/supervisor.yaml":      0o600,
		"var/lib/otelcol-supervisor":                  fs.ModeDir | 0o700,
		"etc/systemd/system/opamp-supervisor.service": 0o644,
	} {
		g.Expect(files).To(HaveKeyWithValue(name, mode), name)
	}
	g.Expect(tree(t, tmp)).To(BeEmpty(), "the installer's temporary files")
	unit, err := os.ReadFile(filepath.Join(root, "etc/systemd/system/opamp-supervisor.service"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(unit)).To(And(
		ContainSubstring("\nExecStart=/usr/local/bin/opampsupervisor --config /etc/otelcol-supervisor/supervisor.yaml\n"),
		ContainSubstring("\nKillSignal=SIGINT\n")))
	installedCollector, err := os.ReadFile(filepath.Join(root, "usr/local/bin/otelcol-contrib"))
	g.Expect(err).NotTo(HaveOccurred())
	e2eCollector, err := os.ReadFile(bins.Collector)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(bytes.Equal(installedCollector, e2eCollector)).To(BeTrue(), "otelcol-contrib is the staged collector")

	b, err := os.ReadFile(filepath.Join(root, "etc/otelcol-supervisor/supervisor.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	cfg, err := supervisoryaml.Parse(b)
	g.Expect(err).NotTo(HaveOccurred())
	opMu.Lock()
	g.Expect(cfg.Server.Endpoint).To(Equal("ws://" + bindAddr + "/v1/opamp"))
	opMu.Unlock()
	g.Expect(cfg.Server.Headers).To(HaveKeyWithValue("Authorization", "Bearer "+token))
	g.Expect(cfg.Capabilities).To(And(HaveKeyWithValue("accepts_remote_config", true), HaveKeyWithValue("reports_remote_config", true)))
	g.Expect(cfg.Agent.Executable).To(Equal("/usr/local/bin/otelcol-contrib"))
	g.Expect(cfg.Agent.ValidateConfig).To(BeTrue())
	g.Expect(cfg.Agent.Description.NonIdentifyingAttributes).To(HaveKeyWithValue("linkmesh.environment", "e2e"))
	g.Expect(cfg.Storage.Directory).To(Equal("/var/lib/otelcol-supervisor"))

	// The installed supervisor, paths rebased to the root, joins the ManagedCollector and redeems the token.
	host, err := localagent.Installed(root)
	g.Expect(err).NotTo(HaveOccurred())
	start := time.Now()
	proc := run(t, host)
	var uid string
	g.Eventually(func(g Gomega) {
		et := &v1alpha1.EnrollmentToken{}
		g.Expect(env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "web-01"}, et)).To(Succeed())
		g.Expect(et.Status.Phase).To(Equal(v1alpha1.TokenRedeemed))
		uid = et.Status.RedeemedBy.InstanceUID
		mc := getMC(g, ns, "hosts")
		g.Expect(mc.Status.Counts.Connected).To(Equal(int32(1)))
		g.Expect(mc.Status.Agents).To(HaveLen(1))
		g.Expect(mc.Status.Agents[0].InstanceUID).To(Equal(uid))
		g.Expect(cond(mc, v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
	}, timeout, interval).Should(Succeed())
	t.Logf("MEASURE installed host connected, redeemed and ready: %v", time.Since(start).Round(time.Millisecond))

	// Running the installer again on the same host is safe: it presents the instance UID the supervisor
	// keeps, gets the same supervisor.yaml, and replaces the files in place.
	g.Expect(proc.Stop(15 * time.Second)).To(Succeed())
	again := runInstaller(t, "second install", root, tmp, "--token", token, "--environment", "e2e",
		"--supervisor-version", manifests.DefaultPodSupervisorVersion)
	g.Expect(again.err).NotTo(HaveOccurred(), again.out)
	g.Expect(again.out).To(ContainSubstring("from the server's mirror"), "the mirror is used when it has the files")
	b2, err := os.ReadFile(filepath.Join(root, "etc/otelcol-supervisor/supervisor.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(b2)).To(Equal(string(b)))
	run(t, host)
	g.Eventually(func(g Gomega) {
		mc := getMC(g, ns, "hosts")
		g.Expect(mc.Status.Counts.Connected).To(Equal(int32(1)))
		g.Expect(mc.Status.Agents).To(HaveLen(1))
		g.Expect(mc.Status.Agents[0].InstanceUID).To(Equal(uid))
	}, timeout, interval).Should(Succeed())

	// An expired token: its expiry has passed (set here, rather than waiting out the 1m minimum TTL).
	expired := enrollmentToken(g, ns, "expired", "hosts")
	g.Expect(env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "expired"}, et)).To(Succeed())
	patch := client.MergeFrom(et.DeepCopy())
	et.Status.ExpiresAt = &metav1.Time{Time: time.Now().Add(-time.Minute)}
	g.Expect(env.Client.Status().Patch(ctx, et, patch)).To(Succeed())
	revoked := enrollmentToken(g, ns, "revoked", "hosts")
	g.Expect(env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "revoked"}, et)).To(Succeed())
	et.Spec.Revoked = true
	g.Expect(env.Client.Update(ctx, et)).To(Succeed())
	fresh := enrollmentToken(g, ns, "fresh", "hosts")

	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{name: "no token", args: []string{"--mirror"}, want: "no token: pass --token <TOKEN> or set LINKMESH_TOKEN"},
		{name: "wrong token", args: []string{"--token", "lme_wrong-token"}, want: downloads.RejectedMessage},
		{name: "used token", args: []string{"--token", token}, want: downloads.RejectedMessage},
		{name: "expired token", args: []string{"--token", expired}, want: downloads.RejectedMessage},
		{name: "revoked token", args: []string{"--token", revoked}, want: downloads.RejectedMessage},
		{name: "unreachable server", args: []string{"--token", fresh, "--server", "http://127.0.0.1:" + strconv.Itoa(freePort(t))},
			want: "cannot reach the LinkMesh server"},
		{name: "unknown arch", args: []string{"--token", fresh, "--arch", "riscv64"}, want: "unsupported architecture 'riscv64'"},
		{name: "mirror missing a file", args: []string{"--token", fresh, "--mirror", "--otel-version", "0.1.0"},
			want: "the server's mirror has no otelcol-contrib_0.1.0_linux_"},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			other := filepath.Join(t.TempDir(), "other")
			tmp := t.TempDir()
			res := runInstaller(t, c.name, other, tmp, c.args...)
			g.Expect(res.err).To(HaveOccurred(), res.out)
			g.Expect(res.out).To(ContainSubstring(c.want))
			g.Expect(res.out).NotTo(ContainSubstring("lme_"), "the installer's output shows no token")
			g.Expect(other).NotTo(BeADirectory(), "nothing is installed")
			g.Expect(tree(t, tmp)).To(BeEmpty(), "no temporary files are left")
		})
	}
	// The checksum mismatch needs a damaged mirror; internal/downloads tests it against the same handler.
	// The fresh token was never redeemed by any of the failed runs.
	g.Expect(env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "fresh"}, et)).To(Succeed())
	g.Expect(et.Status.Phase).To(Equal(v1alpha1.TokenPending))
}
