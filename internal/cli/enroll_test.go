package cli_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/downloads"
	"github.com/linkmesh/linkmesh-operator/test/framework/simagent"
	"github.com/linkmesh/linkmesh-operator/test/framework/supervisoryaml"
)

const hostsConfig = "receivers:\n  otlp:\n    protocols:\n      grpc:\nexporters:\n  debug:\nservice:\n  pipelines:\n    logs:\n      receivers: [otlp]\n      exporters: [debug]\n"

func createCollector(t *testing.T, ns, name string, mode v1alpha1.CollectorMode) {
	t.Helper()
	mc := &v1alpha1.ManagedCollector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.ManagedCollectorSpec{Config: hostsConfig, Mode: mode},
	}
	if err := env.Client.Create(context.Background(), mc); err != nil {
		t.Fatal(err)
	}
}

func getToken(g Gomega, ns, name string) *v1alpha1.EnrollmentToken {
	et := &v1alpha1.EnrollmentToken{}
	g.Expect(env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, et)).To(Succeed())
	return et
}

func secretToken(g Gomega, ns string, et *v1alpha1.EnrollmentToken) string {
	secret := &corev1.Secret{}
	g.Expect(env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: et.Status.SecretName}, secret)).To(Succeed())
	return string(secret.Data[v1alpha1.TokenSecretKey])
}

// installLineRE is the product document's one-liner for the test's operator, with a token filled in.
var installLineRE = regexp.MustCompile(`^curl -fsSL http://127\.0\.0\.1:[0-9]+/api/v1/downloads/install-opamp\.sh \| sudo sh -s -- --token (lme_[A-Za-z0-9_-]+)( .*)?\n$`)

// TestEnrollPrintsACommandThatEnrollsTheHost: what enroll prints, run as is on a host (with --root and
// --no-start, as a test host needs), installs it with the token; the host's supervisor, played by a
// simulated agent with the installed file's endpoint and token, joins and redeems it; status and tokens show
// the host.
func TestEnrollPrintsACommandThatEnrollsTheHost(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createCollector(t, ns, "hosts", v1alpha1.ModeExternal)

	run := kubectlLinkmesh(t, "enroll", "hosts", "-n", ns, "--name", "web-01", "--ttl", "20m", "--environment", "e2e",
		"--description", "web-01.example.com")
	g.Expect(run.code).To(Equal(0), run.err)
	m := installLineRE.FindStringSubmatch(run.stdout)
	g.Expect(m).NotTo(BeNil(), "stdout is the install line alone:\n%s", run.stdout)
	g.Expect(m[2]).To(Equal(" --environment e2e"))
	token := m[1]
	et := getToken(g, ns, "web-01")
	g.Expect(secretToken(g, ns, et)).To(Equal(token), "the printed token is the EnrollmentToken's")
	g.Expect(run.stdout).To(Equal(strings.Replace(et.Status.InstallCommand, "<TOKEN>", token, 1) + " --environment e2e\n"))
	g.Expect(et.Spec.Description).To(Equal("web-01.example.com"))
	g.Expect(et.Spec.TTL.Duration).To(Equal(20 * time.Minute))
	g.Expect(run.err).To(ContainSubstring("enrollmenttoken/web-01 created for managedcollector/hosts; it expires at " +
		et.Status.ExpiresAt.UTC().Format(time.RFC3339) + " (in 19m) unless a host redeems it first."))
	g.Expect(run.err).To(ContainSubstring("Warning: the command holds the token, a secret."))
	g.Expect(run.err).NotTo(ContainSubstring(token), "the token goes to stdout only")

	root := filepath.Join(t.TempDir(), "web-01")
	installed, err := runOnHost(t, strings.TrimSuffix(run.stdout, "\n"), root)
	g.Expect(err).NotTo(HaveOccurred(), installed)
	g.Expect(installed).To(ContainSubstring("downloading from the server's mirror"))
	g.Expect(installed).NotTo(ContainSubstring(token), "the installer prints no token")
	b, err := os.ReadFile(filepath.Join(root, "etc/otelcol-supervisor/supervisor.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	cfg, err := supervisoryaml.Parse(b)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cfg.Server.Endpoint).To(Equal("ws://" + opampAddr + "/v1/opamp"))
	g.Expect(cfg.Server.Headers).To(HaveKeyWithValue("Authorization", "Bearer "+token))
	g.Expect(cfg.Agent.Description.NonIdentifyingAttributes).To(HaveKeyWithValue("linkmesh.environment", "e2e"))
	g.Expect(filepath.Join(root, "usr/local/bin/opampsupervisor")).To(BeARegularFile())

	// The installed supervisor connects with what the file says.
	agent := simagent.Start(t, strings.TrimSuffix(strings.TrimPrefix(cfg.Server.Endpoint, "ws://"), "/v1/opamp"),
		strings.TrimPrefix(cfg.Server.Headers["Authorization"], "Bearer "), simagent.Options{Host: "web-01.example.com"})
	g.Eventually(func(g Gomega) {
		et := getToken(g, ns, "web-01")
		g.Expect(et.Status.Phase).To(Equal(v1alpha1.TokenRedeemed))
		mc := &v1alpha1.ManagedCollector{}
		g.Expect(env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "hosts"}, mc)).To(Succeed())
		g.Expect(mc.Status.Connected).To(Equal("1/1"))
		g.Expect(mc.Status.Counts.ConfigApplied).To(Equal(int32(1)))
	}, timeout, interval).Should(Succeed())

	tokens := kubectlLinkmesh(t, "tokens", "hosts", "-n", ns)
	g.Expect(tokens.code).To(Equal(0), tokens.err)
	g.Expect(tokens.stdout).To(MatchRegexp(`(?m)^NAME +COLLECTOR +PHASE +EXPIRES +HOST +REDEEMED +AGE +DESCRIPTION$`))
	g.Expect(tokens.stdout).To(MatchRegexp(`(?m)^web-01 +hosts +Redeemed +never \(redeemed\) +web-01\.example\.com +\S+ ago +\S+ +web-01\.example\.com$`))

	var status result
	g.Eventually(func(g Gomega) {
		status = kubectlLinkmesh(t, "status", "hosts", "-n", ns)
		g.Expect(status.code).To(Equal(0), status.err)
		g.Expect(status.stdout).To(ContainSubstring("Connected:   1 of 1 desired; 1 healthy, 1 run the config, 0 failed it, 0 drifted\n"))
		g.Expect(status.stdout).To(MatchRegexp(`(?m)^  web-01\.example\.com +<none> +<none> +true +true +\S+ +Applied +` + agent.UID.String() + ` +<none>$`))
		g.Expect(status.stdout).To(MatchRegexp(`(?m)^  Normal +Registered +\S+ +Collector web-01\.example\.com \(instance ` + agent.UID.String() + `\) registered`))
	}, timeout, interval).Should(Succeed())
	t.Logf("kubectl linkmesh status hosts:\n%s", status.stdout)

	list := kubectlLinkmesh(t, "status", "-n", ns)
	g.Expect(list.code).To(Equal(0), list.err)
	t.Logf("kubectl linkmesh status -n %s:\n%s\nkubectl linkmesh tokens hosts:\n%s", ns, list.stdout, tokens.stdout)
	g.Expect(list.stdout).To(MatchRegexp(`(?m)^NAME +MODE +READY +CONNECTED +APPLIED +HEALTHY +DRIFTED +THROUGHPUT +AGE +REASON$`))
	g.Expect(list.stdout).To(MatchRegexp(`(?m)^hosts +External +True +1/1 +True +1/1 +0 +<none> +\S+ +Ready$`))
}

// TestEnrollYAMLIsTheBootstrapConfig: -o yaml prints the bytes the operator serves to a host that presents
// the token, for the same environment and supervisor version.
func TestEnrollYAMLIsTheBootstrapConfig(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createCollector(t, ns, "hosts", v1alpha1.ModeExternal)

	run := kubectlLinkmesh(t, "enroll", "hosts", "-n", ns, "-o", "yaml", "--environment", "staging", "--supervisor-version", "0.161.0")
	g.Expect(run.code).To(Equal(0), run.err)
	cfg, err := supervisoryaml.Parse([]byte(run.stdout))
	g.Expect(err).NotTo(HaveOccurred(), run.stdout)
	token := strings.TrimPrefix(cfg.Server.Headers["Authorization"], "Bearer ")
	g.Expect(token).To(HavePrefix("lme_"))
	g.Expect(cfg.Capabilities).NotTo(HaveKey("reports_remote_config"), "0.161.0 implies it")
	g.Expect(run.err).To(ContainSubstring("Warning: this supervisor.yaml holds the token, a secret."))
	g.Expect(run.err).NotTo(ContainSubstring(token))

	req, err := http.NewRequest(http.MethodGet, "http://"+opampAddr+downloads.BootstrapConfigPath+"?environment=staging&supervisor_version=0.161.0", nil)
	g.Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	served, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK), string(served))
	g.Expect(run.stdout).To(Equal(string(served)))
}

// TestExpiredTokenInstallLineIsRefused: once the token's TTL has passed, the printed line fails at the
// token check with the installer's message and installs nothing.
func TestExpiredTokenInstallLineIsRefused(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createCollector(t, ns, "hosts", v1alpha1.ModeExternal)
	run := kubectlLinkmesh(t, "enroll", "hosts", "-n", ns, "--ttl", "1m")
	g.Expect(run.code).To(Equal(0), run.err)

	clock.SetTime(time.Now().Add(2 * time.Minute))
	defer clock.SetTime(time.Now())
	root := filepath.Join(t.TempDir(), "late")
	out, err := runOnHost(t, strings.TrimSuffix(run.stdout, "\n"), root)
	g.Expect(err).To(HaveOccurred(), out)
	g.Expect(out).To(ContainSubstring("install-opamp: error: " + downloads.RejectedMessage))
	g.Expect(root).NotTo(BeADirectory(), "nothing is installed")
}

// TestEnrollRefusesBadInput: every bad input exits 1 with what is wrong, and creates no EnrollmentToken.
func TestEnrollRefusesBadInput(t *testing.T) {
	ns := newNamespace(t)
	createCollector(t, ns, "hosts", v1alpha1.ModeExternal)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{name: "no such ManagedCollector", args: []string{"enroll", "nope"},
			want: `error: managedcollector "nope" not found in namespace "` + ns + `" (kubectl get managedcollectors -n ` + ns + ` lists them)`},
		{name: "no COLLECTOR", args: []string{"enroll"}, want: "error: kubectl linkmesh enroll takes COLLECTOR (see kubectl linkmesh enroll --help)"},
		{name: "bad environment", args: []string{"enroll", "hosts", "--environment", "prod env"},
			want: "error: --environment: environment may only contain letters, digits, '.', '_' and '-'"},
		{name: "old supervisor", args: []string{"enroll", "hosts", "--supervisor-version", "0.120.0"},
			want: "error: --supervisor-version: supervisor version 0.120.0 is older than 0.135.0"},
		{name: "v prefix", args: []string{"enroll", "hosts", "--supervisor-version", "v0.149.0"},
			want: "error: --supervisor-version: write v0.149.0 without the v"},
		{name: "unknown output", args: []string{"enroll", "hosts", "-o", "json"},
			want: `error: --output "json" is not supported: leave it out for the install command, or use yaml`},
		{name: "ttl out of bounds", args: []string{"enroll", "hosts", "--ttl", "30s"}, want: "ttl must be between 1m and 720h (30d)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			run := kubectlLinkmesh(t, append(c.args, "-n", ns)...)
			g.Expect(run.code).To(Equal(1))
			g.Expect(run.stdout).To(BeEmpty())
			g.Expect(run.err).To(ContainSubstring(c.want))
			tokens := &v1alpha1.EnrollmentTokenList{}
			g.Expect(env.Client.List(context.Background(), tokens, client.InNamespace(ns))).To(Succeed())
			g.Expect(tokens.Items).To(BeEmpty())
		})
	}
}

// TestMissingCollectorIsAnError: status and tokens of a ManagedCollector that does not exist, and revoking
// a token that does not exist, exit 1 and say so.
func TestMissingCollectorIsAnError(t *testing.T) {
	ns := newNamespace(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{args: []string{"status", "nope"}, want: `error: managedcollector "nope" not found in namespace "` + ns + `" (kubectl get managedcollectors -n ` + ns + ` lists them)`},
		{args: []string{"tokens", "nope"}, want: `error: managedcollector "nope" not found in namespace "` + ns + `" (kubectl get managedcollectors -n ` + ns + ` lists them)`},
		{args: []string{"revoke", "nope"}, want: `error: enrollmenttoken "nope" not found in namespace "` + ns + `" (kubectl linkmesh tokens lists them)`},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			g := NewWithT(t)
			run := kubectlLinkmesh(t, append(c.args, "-n", ns)...)
			g.Expect(run.code).To(Equal(1))
			g.Expect(run.stdout).To(BeEmpty())
			g.Expect(run.err).To(Equal(c.want + "\n"))
		})
	}
}

// TestRevoke: revoke ends a token; its install line is refused from then on, and revoking again is no error.
func TestRevoke(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createCollector(t, ns, "hosts", v1alpha1.ModeExternal)
	run := kubectlLinkmesh(t, "enroll", "hosts", "-n", ns, "--name", "web-02")
	g.Expect(run.code).To(Equal(0), run.err)

	revoked := kubectlLinkmesh(t, "revoke", "web-02", "-n", ns)
	g.Expect(revoked.code).To(Equal(0), revoked.err)
	g.Expect(revoked.stdout).To(Equal("enrollmenttoken/web-02 revoked\n"))
	g.Eventually(func(g Gomega) {
		g.Expect(getToken(g, ns, "web-02").Status.Phase).To(Equal(v1alpha1.TokenRevoked))
	}, timeout, interval).Should(Succeed())
	out, err := runOnHost(t, strings.TrimSuffix(run.stdout, "\n"), filepath.Join(t.TempDir(), "root"))
	g.Expect(err).To(HaveOccurred(), out)
	g.Expect(out).To(ContainSubstring(downloads.RejectedMessage))

	again := kubectlLinkmesh(t, "revoke", "web-02", "-n", ns)
	g.Expect(again.code).To(Equal(0), again.err)
	g.Expect(again.stdout).To(Equal("enrollmenttoken/web-02 was already revoked\n"))

	tokens := kubectlLinkmesh(t, "tokens", "-n", ns)
	g.Expect(tokens.stdout).To(MatchRegexp(`(?m)^web-02 +hosts +Revoked +<none> +<none> +<none> +\S+ +<none>$`))
}
