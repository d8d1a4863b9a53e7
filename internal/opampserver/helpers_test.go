package opampserver_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	. "github.com/onsi/gomega"
	"github.com/open-telemetry/opamp-go/protobufs"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/credential"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
	"github.com/linkmesh/linkmesh-operator/test/framework/simagent"
	"github.com/linkmesh/linkmesh-operator/test/framework/testenv"
)

const configA = `receivers:
  otlp:
    protocols:
      grpc:
exporters:
  debug:
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
`

const configB = configA + "# second revision\n"

// issued holds every token the tests minted; TestMain fails the run if any of them shows up in a log line.
var issued struct {
	sync.Mutex
	tokens []string
}

func remember(token string) string {
	issued.Lock()
	defer issued.Unlock()
	issued.tokens = append(issued.tokens, token)
	return token
}

func newNamespace(t *testing.T) string { return testenv.Namespace(t, k8s, "opamp") }

// waitCached blocks until the manager's cache holds obj at its current resourceVersion, so a test never
// passes because the server had not seen an object yet.
func waitCached(t *testing.T, obj client.Object) {
	t.Helper()
	want := obj.GetResourceVersion()
	cached := obj.DeepCopyObject().(client.Object)
	NewWithT(t).Eventually(func() string {
		if err := mgrCache.Get(context.Background(), client.ObjectKeyFromObject(obj), cached); err != nil {
			return err.Error()
		}
		return cached.GetResourceVersion()
	}, 10*time.Second, 10*time.Millisecond).Should(Equal(want))
}

func newCollector(t *testing.T, ns, name, config string) (types.NamespacedName, string) {
	t.Helper()
	ctx := context.Background()
	mc := &v1alpha1.ManagedCollector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		// DaemonSet mode, whose pods present the collector token; nothing reconciles it into a DaemonSet here.
		Spec: v1alpha1.ManagedCollectorSpec{Config: config, Mode: v1alpha1.ModeDaemonSet},
	}
	if err := k8s.Create(ctx, mc); err != nil {
		t.Fatal(err)
	}
	token := remember(credential.New(credential.PrefixCollector))
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: naming.CredentialsSecret(name), Labels: naming.CollectorLabels(name)},
		Data: map[string][]byte{
			naming.CollectorTokenKey:  []byte(token),
			naming.OwnMetricsTokenKey: []byte(credential.New(credential.PrefixOwnMetrics)),
		},
	}
	if err := controllerutil.SetControllerReference(mc, sec, scheme); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, sec); err != nil {
		t.Fatal(err)
	}
	waitCached(t, mc)
	waitCached(t, sec)
	return client.ObjectKeyFromObject(mc), token
}

func newToken(t *testing.T, ns, name, collector string, status v1alpha1.EnrollmentTokenStatus, revoked bool) (*v1alpha1.EnrollmentToken, string) {
	t.Helper()
	ctx := context.Background()
	et := &v1alpha1.EnrollmentToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.EnrollmentTokenSpec{CollectorRef: v1alpha1.CollectorReference{Name: collector}, Revoked: revoked},
	}
	if err := k8s.Create(ctx, et); err != nil {
		t.Fatal(err)
	}
	token := remember(credential.New(credential.PrefixEnrollment))
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: naming.TokenSecret(name), Labels: naming.TokenLabels(name, collector)},
		Data:       map[string][]byte{v1alpha1.TokenSecretKey: []byte(token)},
	}
	if err := controllerutil.SetControllerReference(et, sec, scheme); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, sec); err != nil {
		t.Fatal(err)
	}
	if status.Phase != "" {
		status.SecretName = sec.Name
		et.Status = status
		if err := k8s.Status().Update(ctx, et); err != nil {
			t.Fatal(err)
		}
	}
	waitCached(t, et)
	waitCached(t, sec)
	return et, token
}

func pending(expiresIn time.Duration) v1alpha1.EnrollmentTokenStatus {
	at := metav1.NewTime(clk.Now().Add(expiresIn))
	return v1alpha1.EnrollmentTokenStatus{Phase: v1alpha1.TokenPending, ExpiresAt: &at}
}

func header(auth string) http.Header {
	h := http.Header{}
	if auth != "" {
		h.Set("Authorization", auth)
	}
	return h
}

// dialStatus is the HTTP status of a WebSocket upgrade.
func dialStatus(t *testing.T, auth string) int {
	t.Helper()
	conn, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/v1/opamp", header(auth))
	if conn != nil {
		_ = conn.Close()
	}
	if resp == nil {
		t.Fatalf("dial: %v", err)
	}
	return resp.StatusCode
}

func dial(t *testing.T, token string) *websocket.Conn {
	t.Helper()
	conn, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/v1/opamp", header("Bearer "+token))
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial: %v (HTTP %d)", err, status)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// wsSend writes one OpAMP WebSocket message: a zero varint header, then the protobuf.
func wsSend(conn *websocket.Conn, msg *protobufs.AgentToServer) error {
	b, err := proto.Marshal(msg)
	if err != nil {
		return err
	}
	return conn.WriteMessage(websocket.BinaryMessage, append([]byte{0}, b...))
}

func wsRead(conn *websocket.Conn) (*protobufs.ServerToAgent, error) {
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err := conn.ReadMessage()
	if err != nil {
		return nil, err
	}
	out := &protobufs.ServerToAgent{}
	return out, proto.Unmarshal(b[1:], out)
}

// post sends one plain-HTTP OpAMP message and returns the status and the decoded answer.
func post(t *testing.T, auth string, body []byte, extra http.Header) (int, *protobufs.ServerToAgent) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/opamp", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header(auth)
	req.Header.Set("Content-Type", "application/x-protobuf")
	for k, v := range extra {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil
	}
	out := &protobufs.ServerToAgent{}
	if err := proto.Unmarshal(data, out); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

func marshal(t *testing.T, msg *protobufs.AgentToServer) []byte {
	t.Helper()
	b, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fullState is the first message of a supervisor that starts fresh.
func fullState(uid uuid.UUID, host string) *protobufs.AgentToServer {
	return &protobufs.AgentToServer{
		InstanceUid:      uid[:],
		SequenceNum:      1,
		AgentDescription: simagent.Description(host),
		Capabilities:     uint64(simagent.Capabilities),
		Health:           &protobufs.ComponentHealth{Healthy: true},
	}
}

// startAgent connects a simulated supervisor to the test's server.
func startAgent(t *testing.T, token string, o simagent.Options) *simagent.Agent {
	t.Helper()
	return simagent.Start(t, addr, token, o)
}

func collectorStatus(t *testing.T, key types.NamespacedName) v1alpha1.ManagedCollectorStatus {
	t.Helper()
	var mc v1alpha1.ManagedCollector
	if err := k8s.Get(context.Background(), key, &mc); err != nil {
		t.Fatal(err)
	}
	return mc.Status
}
