//go:build replicas

package replicas

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	. "github.com/onsi/gomega"
	"github.com/open-telemetry/opamp-go/protobufs"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/test/framework/manager"
	"github.com/linkmesh/linkmesh-operator/test/framework/simagent"
	"github.com/linkmesh/linkmesh-operator/test/framework/testenv"
)

// TestAnyReplica: what a collector or a host does works on either of two replicas, leader or not.
func TestAnyReplica(t *testing.T) {
	c := startReplicas(t, 2)
	t.Run("one of 50 racing redemptions of a token over both replicas wins", func(t *testing.T) { testRedeemRace(t, c) })
	t.Run("own metrics posted to the other replica are counted once", func(t *testing.T) { testOwnMetricsElsewhere(t, c) })
	t.Run("revocation and deletion close the connection on the replica that holds it", func(t *testing.T) { testRevocation(t, c) })
}

func testRedeemRace(t *testing.T, c *cluster) {
	g := NewWithT(t)
	ns := testenv.Namespace(t, env.Client, "replicas")
	createHosts(t, ns, "hosts")
	token := enrollmentToken(t, ns, "race", "hosts")
	for _, r := range c.replicas {
		// Both replicas' caches know the token: an upgrade with it is accepted (the redeem is at the first
		// message), so a loser below loses to the winner, not to a cache that lags.
		g.Eventually(func() int { s, _, _ := handshake(r.Addr(), token); return s }, timeout, interval).
			Should(Equal(http.StatusSwitchingProtocols), "%s knows the token", r.Name)
	}

	const hosts = 50
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		winners []uuid.UUID
		losers  []string
	)
	start := make(chan struct{})
	for i := range hosts {
		r := c.replicas[i%len(c.replicas)]
		uid := uuid.Must(uuid.NewV7())
		body, err := proto.Marshal(fullState(uid, fmt.Sprintf("host-%02d", i)))
		g.Expect(err).NotTo(HaveOccurred())
		wg.Go(func() {
			<-start
			status, resp, err := post(r.Addr(), token, body)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				losers = append(losers, err.Error())
			case status != http.StatusOK:
				losers = append(losers, http.StatusText(status))
			case resp.ErrorResponse != nil:
				losers = append(losers, resp.ErrorResponse.ErrorMessage)
			default:
				winners = append(winners, uid)
			}
		})
	}
	close(start)
	wg.Wait()
	g.Expect(winners).To(HaveLen(1), "exactly one host redeems the token")
	g.Expect(losers).To(HaveLen(hosts - 1))
	for _, l := range losers {
		g.Expect(l).To(ContainSubstring("redeemed by another collector instance"))
	}
	et := &v1alpha1.EnrollmentToken{}
	g.Expect(env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "race"}, et)).To(Succeed())
	g.Expect(et.Status.Phase).To(Equal(v1alpha1.TokenRedeemed))
	g.Expect(et.Status.RedeemedBy).NotTo(BeNil())
	g.Expect(et.Status.RedeemedBy.InstanceUID).To(Equal(winners[0].String()))
	g.Eventually(func(g Gomega) {
		st := getMC(g, ns, "hosts").Status
		g.Expect(st.Counts.Connected).To(BeEquivalentTo(1), "status shows the one host that joined")
		g.Expect(st.Agents).To(ConsistOf(HaveField("InstanceUID", winners[0].String())))
	}, timeout, interval).Should(Succeed())
}

func testOwnMetricsElsewhere(t *testing.T, c *cluster) {
	g := NewWithT(t)
	ns := testenv.Namespace(t, env.Client, "replicas")
	const name = "metered"
	token := createCollector(t, ns, name, configA, 10)
	// One collector on each replica; each posts its own metrics to the other one, as a Service may send
	// an export anywhere. The first exports 20 spans a second, the second 10.
	rates := []int64{20, 10}
	var agents []*simagent.Agent
	for i, r := range c.replicas {
		agents = append(agents, simagent.Start(t, r.Addr(), token, simagent.Options{Host: fmt.Sprintf("node-%d", i), OwnMetrics: true}))
	}
	start := time.Now().Add(-2 * time.Minute).Truncate(time.Second)
	for i, a := range agents {
		g.Eventually(a.OwnMetricsOffers, timeout, interval).ShouldNot(BeEmpty())
		offer := a.OwnMetricsOffers()[0]
		g.Expect(offer.GetDestinationEndpoint()).To(Equal("http://" + c.replicas[i].Addr() + "/v1/metrics"))
		bearer := offer.GetHeaders().GetHeaders()[0].GetValue()
		other := c.replicas[(i+1)%len(c.replicas)]
		// Cumulative counters a minute apart: the second export rates the collector at rates[i].
		for k, spans := range []int64{60 * rates[i], 120 * rates[i]} {
			status, rejected := postMetrics(t, other.Addr(), bearer, selfMetrics(a.UID.String(), start, start.Add(time.Duration(k+1)*time.Minute), spans))
			g.Expect(status).To(Equal(http.StatusOK))
			g.Expect(rejected).To(BeZero(), "%s takes the own metrics of a collector connected to %s", other.Name, c.replicas[i].Name)
		}
	}
	g.Eventually(func(g Gomega) {
		th := getMC(g, ns, name).Status.Throughput
		g.Expect(th).NotTo(BeNil())
		g.Expect(th.Reporting).To(BeEquivalentTo(2), "each collector counted once")
		g.Expect(th.Spans).NotTo(BeNil())
		g.Expect(th.Spans.Accepted.String()).To(Equal("30"))
		g.Expect(th.Spans.Sent.String()).To(Equal("30"))
	}, timeout, interval).Should(Succeed())
	for i, r := range c.replicas {
		// The replica that took a collector's exports has its rate; the one holding its connection not.
		taken := rates[(i+1)%len(rates)]
		families, err := r.Metrics(context.Background())
		g.Expect(err).NotTo(HaveOccurred())
		labels := map[string]string{"namespace": ns, "name": name}
		g.Expect(manager.Gauges(families, "linkmesh_collector_reporting", labels)).To(Equal([]float64{1}), "%s", r.Name)
		labels["signal"], labels["outcome"] = "spans", "accepted"
		g.Expect(manager.Gauges(families, "linkmesh_collector_items_per_second", labels)).To(Equal([]float64{float64(taken)}), "%s", r.Name)
	}
}

func testRevocation(t *testing.T, c *cluster) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := testenv.Namespace(t, env.Client, "replicas")
	createHosts(t, ns, "hosts")
	leader, other := c.replicas[0], c.replicas[1]
	g.Expect(c.leader()).To(Equal(leader))

	// A host on each replica with a token of its own, and one that stays.
	revoked := dialHost(t, other.Addr(), enrollmentToken(t, ns, "revoked", "hosts"), "host-revoked")
	deleted := dialHost(t, leader.Addr(), enrollmentToken(t, ns, "deleted", "hosts"), "host-deleted")
	stays := dialHost(t, other.Addr(), enrollmentToken(t, ns, "stays", "hosts"), "host-stays")

	et := &v1alpha1.EnrollmentToken{}
	g.Expect(env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "revoked"}, et)).To(Succeed())
	et.Spec.Revoked = true
	at := time.Now()
	g.Expect(env.Client.Update(ctx, et)).To(Succeed())
	g.Eventually(revoked.closed, timeout, 10*time.Millisecond).Should(BeClosed(), "revoking the token closes the host's connection on %s", other.Name)
	measure(t, "spec.revoked to the connection closed on the replica that does not lead", revoked.closedAt.Sub(at))

	at = time.Now()
	g.Expect(env.Client.Delete(ctx, &v1alpha1.EnrollmentToken{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "deleted"}})).To(Succeed())
	g.Eventually(deleted.closed, timeout, 10*time.Millisecond).Should(BeClosed(), "deleting the token closes the host's connection on %s", leader.Name)
	measure(t, "EnrollmentToken deletion to the connection closed on the leader", deleted.closedAt.Sub(at))
	g.Consistently(stays.closed, time.Second, 50*time.Millisecond).ShouldNot(BeClosed(), "a host of another token stays")

	// A ManagedCollector's deletion closes its pods' connections on both replicas.
	token := createCollector(t, ns, "doomed", configA, 10)
	var pods []*rawAgent
	for i, r := range c.replicas {
		pods = append(pods, dialHost(t, r.Addr(), token, fmt.Sprintf("pod-%d", i)))
	}
	at = time.Now()
	g.Expect(env.Client.Delete(ctx, &v1alpha1.ManagedCollector{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "doomed"}})).To(Succeed())
	for i, p := range pods {
		g.Eventually(p.closed, timeout, 10*time.Millisecond).Should(BeClosed(), "deleting the ManagedCollector closes its collector's connection on %s", c.replicas[i].Name)
		measure(t, "ManagedCollector deletion to the connection closed on "+c.replicas[i].Name, p.closedAt.Sub(at))
	}
	g.Expect(stays.closed).NotTo(BeClosed())
}

// createHosts creates an External ManagedCollector and waits until the leader accepted its config.
func createHosts(t *testing.T, ns, name string) {
	t.Helper()
	g := NewWithT(t)
	g.Expect(env.Client.Create(context.Background(), &v1alpha1.ManagedCollector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.ManagedCollectorSpec{Mode: v1alpha1.ModeExternal, Config: configA},
	})).To(Succeed())
	g.Eventually(func(g Gomega) { g.Expect(getMC(g, ns, name).Status.ConfigHash).To(Equal(hash(configA))) }, timeout, interval).Should(Succeed())
}

// enrollmentToken creates an EnrollmentToken of the ManagedCollector and returns its token once it is
// Pending.
func enrollmentToken(t *testing.T, ns, name, collector string) string {
	t.Helper()
	g := NewWithT(t)
	ctx := context.Background()
	et := &v1alpha1.EnrollmentToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.EnrollmentTokenSpec{CollectorRef: v1alpha1.CollectorReference{Name: collector}, TTL: &metav1.Duration{Duration: time.Hour}},
	}
	g.Expect(env.Client.Create(ctx, et)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, et)).To(Succeed())
		g.Expect(et.Status.Phase).To(Equal(v1alpha1.TokenPending))
		g.Expect(et.Status.SecretName).NotTo(BeEmpty())
	}, timeout, interval).Should(Succeed())
	sec := &corev1.Secret{}
	g.Expect(env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: et.Status.SecretName}, sec)).To(Succeed())
	token := string(sec.Data[v1alpha1.TokenSecretKey])
	g.Expect(token).NotTo(BeEmpty())
	return token
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

// post sends one plain-HTTP OpAMP message to addr and decodes the answer.
func post(addr, token string, body []byte) (int, *protobufs.ServerToAgent, error) {
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/opamp", bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/x-protobuf")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil, err
	}
	out := &protobufs.ServerToAgent{}
	return resp.StatusCode, out, proto.Unmarshal(data, out)
}

// rawAgent is an OpAMP WebSocket connection that says who it is once and then only listens, so the
// moment the server closes it is known to the millisecond.
type rawAgent struct {
	closed   chan struct{}
	closedAt time.Time
}

// dialHost connects with token, sends a full state and waits for the answer, then reads until the server
// closes the connection.
func dialHost(t *testing.T, addr, token, host string) *rawAgent {
	t.Helper()
	g := NewWithT(t)
	conn, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/v1/opamp", http.Header{"Authorization": {"Bearer " + token}})
	g.Expect(err).NotTo(HaveOccurred(), "dialing %s: %v", addr, resp)
	t.Cleanup(func() { _ = conn.Close() })
	b, err := proto.Marshal(fullState(uuid.Must(uuid.NewV7()), host))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(conn.WriteMessage(websocket.BinaryMessage, append([]byte{0}, b...))).To(Succeed())
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, msg, err := conn.ReadMessage()
	g.Expect(err).NotTo(HaveOccurred())
	answer := &protobufs.ServerToAgent{}
	g.Expect(proto.Unmarshal(msg[1:], answer)).To(Succeed())
	g.Expect(answer.ErrorResponse).To(BeNil(), "%s is admitted", host)
	_ = conn.SetReadDeadline(time.Time{})
	a := &rawAgent{closed: make(chan struct{})}
	go func() {
		for {
			if _, _, err := conn.ReadMessage(); err != nil {
				a.closedAt = time.Now()
				close(a.closed)
				return
			}
		}
	}()
	return a
}

// selfMetrics is a collector's own-metrics export, as the collector builds it: cumulative spans accepted
// by its otlp receiver and sent by its debug exporter since start.
func selfMetrics(instance string, start, at time.Time, spans int64) pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "otelcol-contrib")
	rm.Resource().Attributes().PutStr("service.instance.id", instance)
	ms := rm.ScopeMetrics().AppendEmpty().Metrics()
	for _, m := range []struct{ name, attr, comp string }{
		{"otelcol_receiver_accepted_spans", "receiver", "otlp"},
		{"otelcol_exporter_sent_spans", "exporter", "debug"},
	} {
		s := ms.AppendEmpty()
		s.SetName(m.name)
		sum := s.SetEmptySum()
		sum.SetIsMonotonic(true)
		sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
		p := sum.DataPoints().AppendEmpty()
		p.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
		p.SetTimestamp(pcommon.NewTimestampFromTime(at))
		p.SetIntValue(spans)
		p.Attributes().PutStr(m.attr, m.comp)
	}
	return md
}

// postMetrics posts an OTLP/HTTP export to addr's /v1/metrics with the bearer header value, and returns
// the status and the data points the answer says were rejected.
func postMetrics(t *testing.T, addr, bearer string, md pmetric.Metrics) (int, int64) {
	t.Helper()
	body, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/metrics", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", bearer)
	req.Header.Set("Content-Type", "application/x-protobuf")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, 0
	}
	out := pmetricotlp.NewExportResponse()
	if err := out.UnmarshalProto(data); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out.PartialSuccess().RejectedDataPoints()
}
