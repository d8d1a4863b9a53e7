package console_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
	"github.com/linkmesh/linkmesh-operator/internal/operator"
	"github.com/linkmesh/linkmesh-operator/test/framework/simagent"
	"github.com/linkmesh/linkmesh-operator/test/framework/testenv"
)

const (
	timeout  = 30 * time.Second
	interval = 100 * time.Millisecond
)

const config = `receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 0.0.0.0:4317
processors:
  batch: {}
exporters:
  debug:
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [debug]
`

// started is an operator with its console on 127.0.0.1.
type started struct {
	op      *operator.Operator
	console string
}

func startOperator(t *testing.T, requireToken bool) started {
	t.Helper()
	op, stop, err := testenv.RunOperator(env, operator.Options{
		ConsoleBindAddress: "127.0.0.1:0", ConsoleRequireToken: requireToken, SkipControllerNameValidation: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return started{op: op, console: "http://" + op.ConsoleAddr().String()}
}

func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// collector creates a DaemonSet ManagedCollector and connects a simulated supervisor to it with the pods'
// token (envtest schedules no pods: the test plays one).
func collector(t *testing.T, s started, ns, name, host string) *simagent.Agent {
	t.Helper()
	g := NewWithT(t)
	ctx := context.Background()
	mc := &v1alpha1.ManagedCollector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.ManagedCollectorSpec{Mode: v1alpha1.ModeDaemonSet, Config: config},
	}
	g.Expect(env.Client.Create(ctx, mc)).To(Succeed())
	sec := &corev1.Secret{}
	g.Eventually(func(g Gomega) {
		g.Expect(env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: naming.CredentialsSecret(name)}, sec)).To(Succeed())
		g.Expect(sec.Data[naming.CollectorTokenKey]).NotTo(BeEmpty())
	}, timeout, interval).Should(Succeed())
	return simagent.Start(t, s.op.ListenerAddr().String(), string(sec.Data[naming.CollectorTokenKey]), simagent.Options{Host: host})
}

// TestPagesFromTheCache: on loopback, the pages show what status says, with no token.
func TestPagesFromTheCache(t *testing.T) {
	g := NewWithT(t)
	s := startOperator(t, false)
	ns := testenv.Namespace(t, env.Client, "console")
	collector(t, s, ns, "edge", "web-01")

	g.Eventually(func(g Gomega) {
		code, body := get(t, s.console+"/collectors/"+ns+"/edge", "")
		g.Expect(code).To(Equal(http.StatusOK))
		g.Expect(body).To(ContainSubstring("web-01"))
		g.Expect(body).To(ContainSubstring("Registered"))
		g.Expect(body).To(ContainSubstring(">1<"))
		g.Expect(body).NotTo(ContainSubstring(">1/0<"))
	}, timeout, interval).Should(Succeed())
	code, body := get(t, s.console+"/?namespace="+ns, "")
	g.Expect(code).To(Equal(http.StatusOK))
	g.Expect(body).To(ContainSubstring(`href="/collectors/` + ns + `/edge"`))
	code, body = get(t, s.console+"/collectors/"+ns+"/edge/topology", "")
	g.Expect(code).To(Equal(http.StatusOK))
	g.Expect(body).To(ContainSubstring(`data-component="processor/batch"`))
	code, _ = get(t, s.console+"/collectors/"+ns+"/nothing", "")
	g.Expect(code).To(Equal(http.StatusNotFound))
	if strings.Contains(body, "<script>") {
		t.Error("a page carries an inline script, which the Content-Security-Policy refuses")
	}
}

// TestTakenPortFailsAtOnce: the console binds when the operator is built, so a taken port fails start-up with
// a message that names it, rather than later inside the running manager.
func TestTakenPortFailsAtOnce(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	_, err = operator.New(env.Config, operator.Options{
		MetricsAddr: "0", ProbeAddr: "0", OpAMPBindAddress: "127.0.0.1:0",
		ConsoleBindAddress: taken.Addr().String(), SkipControllerNameValidation: true,
	})
	if err == nil || !strings.Contains(err.Error(), "console: listening on "+taken.Addr().String()) {
		t.Errorf("want a start-up error naming the console's address, got %v", err)
	}
}
