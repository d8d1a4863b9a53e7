package opampserver_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	. "github.com/onsi/gomega"
	"github.com/open-telemetry/opamp-go/protobufs"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/collectorconfig"
	"github.com/linkmesh/linkmesh-operator/internal/fleet"
	"github.com/linkmesh/linkmesh-operator/internal/listener"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
	"github.com/linkmesh/linkmesh-operator/internal/opampserver"
	"github.com/linkmesh/linkmesh-operator/test/framework/simagent"
)

func desired(config string) fleet.Desired {
	return fleet.Desired{Revision: fleet.Revision{Config: config, Hash: collectorconfig.Hash(config)}}
}

func TestAuthentication(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	_, collectorToken := newCollector(t, ns, "c1", configA)
	gone, goneToken := newCollector(t, ns, "gone", configA)
	_, pendingToken := newToken(t, ns, "pending", "c1", pending(time.Hour), false)
	_, expiredToken := newToken(t, ns, "expired", "c1", pending(-time.Minute), false)
	_, shortToken := newToken(t, ns, "short", "c1", pending(time.Minute), false)
	_, revokedSpecToken := newToken(t, ns, "revoked-spec", "c1", pending(time.Hour), true)
	_, revokedToken := newToken(t, ns, "revoked", "c1", v1alpha1.EnrollmentTokenStatus{Phase: v1alpha1.TokenRevoked}, false)
	now := metav1.Now()
	_, redeemedToken := newToken(t, ns, "redeemed", "c1", v1alpha1.EnrollmentTokenStatus{
		Phase: v1alpha1.TokenRedeemed, RedeemedBy: &v1alpha1.RedeemedBy{InstanceUID: uuid.NewString()}, RedeemedAt: &now,
	}, false)
	_, noStatusToken := newToken(t, ns, "no-status", "c1", v1alpha1.EnrollmentTokenStatus{}, false)
	_, orphanToken := newToken(t, ns, "orphan", "missing", pending(time.Hour), false)
	deleted, deletedToken := newToken(t, ns, "deleted", "c1", pending(time.Hour), false)

	var mc v1alpha1.ManagedCollector
	NewWithT(t).Expect(k8s.Get(ctx, gone, &mc)).To(Succeed())
	NewWithT(t).Expect(k8s.Delete(ctx, &mc)).To(Succeed())
	NewWithT(t).Expect(k8s.Delete(ctx, deleted)).To(Succeed())
	// envtest runs no garbage collector: the Secrets of both stay, which is the case under test.
	NewWithT(t).Eventually(func() bool {
		return apierrors.IsNotFound(mgrCache.Get(ctx, gone, &v1alpha1.ManagedCollector{})) &&
			apierrors.IsNotFound(mgrCache.Get(ctx, client.ObjectKeyFromObject(deleted), &v1alpha1.EnrollmentToken{}))
	}, 10*time.Second, 10*time.Millisecond).Should(BeTrue())

	cases := []struct {
		name string
		auth string
		want int
	}{
		{"collector credential", "Bearer " + collectorToken, http.StatusSwitchingProtocols},
		{"scheme is case-insensitive", "bearer " + collectorToken, http.StatusSwitchingProtocols},
		{"pending token", "Bearer " + pendingToken, http.StatusSwitchingProtocols},
		{"redeemed token (instance checked at the first message)", "Bearer " + redeemedToken, http.StatusSwitchingProtocols},
		{"short-lived token before expiry", "Bearer " + shortToken, http.StatusSwitchingProtocols},
		{"no header", "", http.StatusUnauthorized},
		{"empty bearer", "Bearer ", http.StatusUnauthorized},
		{"scheme only", "Bearer", http.StatusUnauthorized},
		{"basic auth", "Basic " + collectorToken, http.StatusUnauthorized},
		{"two tokens", "Bearer " + collectorToken + " " + pendingToken, http.StatusUnauthorized},
		{"wrong token", "Bearer lmc_wrong", http.StatusUnauthorized},
		{"token with one character changed", "Bearer " + collectorToken[:len(collectorToken)-1] + "x", http.StatusUnauthorized},
		{"expired token", "Bearer " + expiredToken, http.StatusUnauthorized},
		{"revoked token (spec.revoked)", "Bearer " + revokedSpecToken, http.StatusUnauthorized},
		{"revoked token (phase Revoked)", "Bearer " + revokedToken, http.StatusUnauthorized},
		{"deleted token", "Bearer " + deletedToken, http.StatusUnauthorized},
		{"token without status yet", "Bearer " + noStatusToken, http.StatusUnauthorized},
		{"token of a missing collector", "Bearer " + orphanToken, http.StatusUnauthorized},
		{"credential of a deleted collector", "Bearer " + goneToken, http.StatusUnauthorized},
	}
	for _, tc := range cases {
		t.Run("websocket/"+tc.name, func(t *testing.T) {
			NewWithT(t).Expect(dialStatus(t, tc.auth)).To(Equal(tc.want))
		})
		t.Run("http/"+tc.name, func(t *testing.T) {
			want := tc.want
			if want == http.StatusSwitchingProtocols {
				want = http.StatusOK
			}
			// An empty message: accepted connections answer it with an error response, redeeming nothing.
			status, _ := post(t, tc.auth, nil, nil)
			NewWithT(t).Expect(status).To(Equal(want))
		})
	}

	t.Run("a 401 says nothing", func(t *testing.T) {
		g := NewWithT(t)
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v1/opamp", nil)
		req.Header.Set("Authorization", "Bearer "+expiredToken)
		resp, err := http.DefaultClient.Do(req)
		g.Expect(err).NotTo(HaveOccurred())
		defer resp.Body.Close()
		g.Expect(resp.StatusCode).To(Equal(http.StatusUnauthorized))
		g.Expect(resp.Header.Get("WWW-Authenticate")).To(BeEmpty())
		g.Expect(resp.ContentLength).To(BeZero())
	})

	t.Run("expiry follows the clock", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(dialStatus(t, "Bearer "+shortToken)).To(Equal(http.StatusSwitchingProtocols))
		saved := clk.Now()
		clk.SetTime(saved.Add(2 * time.Minute))
		defer clk.SetTime(saved)
		g.Expect(dialStatus(t, "Bearer "+shortToken)).To(Equal(http.StatusUnauthorized))
	})
}

func TestTokenRaceHasOneWinner(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	newCollector(t, ns, "c1", configA)
	et, token := newToken(t, ns, "race", "c1", pending(time.Hour), false)

	const hosts = 12
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		winners []uuid.UUID
		losers  []string
	)
	start := make(chan struct{})
	for i := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			uid := uuid.Must(uuid.NewV7())
			body := marshal(t, fullState(uid, "host-"+string(rune('a'+i))))
			<-start
			status, resp := post(t, "Bearer "+token, body, nil)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case status != http.StatusOK:
				losers = append(losers, http.StatusText(status))
			case resp.ErrorResponse != nil:
				losers = append(losers, resp.ErrorResponse.ErrorMessage)
			default:
				winners = append(winners, uid)
			}
		}()
	}
	close(start)
	wg.Wait()
	g.Expect(winners).To(HaveLen(1))
	g.Expect(losers).To(HaveLen(hosts - 1))
	for _, l := range losers {
		g.Expect(l).To(ContainSubstring("redeemed by another collector instance"))
	}

	var got v1alpha1.EnrollmentToken
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(et), &got)).To(Succeed())
	g.Expect(got.Status.Phase).To(Equal(v1alpha1.TokenRedeemed))
	g.Expect(got.Status.RedeemedBy).NotTo(BeNil())
	g.Expect(got.Status.RedeemedBy.InstanceUID).To(Equal(winners[0].String()))
	g.Expect(got.Status.RedeemedBy.HostName).To(HavePrefix("host-"))
	g.Expect(got.Status.RedeemedAt).NotTo(BeNil())
	g.Expect(got.Status.SecretName).To(Equal(et.Status.SecretName), "the patch touches only the redeem fields")

	// The winner keeps working after a restart, over WebSocket too.
	conn := dial(t, token)
	g.Expect(wsSend(conn, fullState(winners[0], "again"))).To(Succeed())
	resp, err := wsRead(conn)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(resp.ErrorResponse).To(BeNil())

	// Another instance is accepted at the upgrade, then refused at its first message and disconnected.
	other := dial(t, token)
	otherUID := uuid.Must(uuid.NewV7())
	g.Expect(wsSend(other, fullState(otherUID, "intruder"))).To(Succeed())
	resp, err = wsRead(other)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(resp.ErrorResponse).NotTo(BeNil())
	g.Expect(resp.ErrorResponse.Type).To(Equal(protobufs.ServerErrorResponseType_ServerErrorResponseType_BadRequest))
	_, err = wsRead(other)
	g.Expect(err).To(HaveOccurred(), "the server closes the connection after the error")

	// The opamp-go client sees the same error through OnError.
	a := startAgent(t, token, simagent.Options{Host: "intruder-2"})
	g.Eventually(a.Errors, 10*time.Second).ShouldNot(BeEmpty())
}

func TestConfigPushStatusAndEvents(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	key, token := newCollector(t, ns, "c1", configA)
	fl.SetDesired(key, desired(configA))

	failB := func(rc *protobufs.AgentRemoteConfig) (protobufs.RemoteConfigStatuses, string) {
		if bytes.Equal(rc.ConfigHash, collectorconfig.HashBytes(configB)) {
			return protobufs.RemoteConfigStatuses_RemoteConfigStatuses_FAILED, "cannot start exporter debug: boom"
		}
		return protobufs.RemoteConfigStatuses_RemoteConfigStatuses_APPLIED, ""
	}
	started := time.Now()
	ws := startAgent(t, token, simagent.Options{Host: "ws-host", Apply: failB})
	// Connect to status Connected, as a user sees it.
	g.Eventually(func() int32 { return collectorStatus(t, key).Counts.Connected }, 10*time.Second, 5*time.Millisecond).Should(Equal(int32(1)))
	t.Logf("MEASURE connect-to-status-connected: %v", time.Since(started))

	httpAgent := startAgent(t, token, simagent.Options{Host: "http-host", HTTP: true})

	// Pushed on connect, under one file name, with the sha256 of the exact bytes.
	for _, a := range []*simagent.Agent{ws, httpAgent} {
		g.Eventually(a.Received, 10*time.Second).Should(HaveLen(1))
		rc := a.Received()[0]
		g.Expect(rc.ConfigHash).To(Equal(collectorconfig.HashBytes(configA)))
		g.Expect(rc.Config.ConfigMap).To(HaveLen(1))
		g.Expect(rc.Config.ConfigMap).To(HaveKey(naming.CollectorConfigKey))
		g.Expect(string(rc.Config.ConfigMap[naming.CollectorConfigKey].Body)).To(Equal(configA))
	}
	g.Eventually(func() v1alpha1.AgentCounts { return collectorStatus(t, key).Counts }, 10*time.Second, 10*time.Millisecond).
		Should(Equal(v1alpha1.AgentCounts{Connected: 2, Healthy: 2, ConfigApplied: 2}))
	st := collectorStatus(t, key)
	g.Expect(st.Agents).To(HaveLen(2))
	for _, a := range st.Agents {
		g.Expect(a.ManagementMode).To(Equal(v1alpha1.ManagementModeOpAMP))
		g.Expect(a.ConfigHash).To(Equal(collectorconfig.Hash(configA)))
		g.Expect(a.ConfigStatus).To(Equal(v1alpha1.ConfigStatusApplied))
		g.Expect(a.HostName).To(Or(Equal("ws-host"), Equal("http-host")))
	}

	// A spec change is pushed to the WebSocket at once and to the HTTP agent at its next poll.
	var mc v1alpha1.ManagedCollector
	g.Expect(k8s.Get(ctx, key, &mc)).To(Succeed())
	mc.Spec.Config = configB
	g.Expect(k8s.Update(ctx, &mc)).To(Succeed())
	fl.SetDesired(key, desired(configB))
	for name, a := range map[string]*simagent.Agent{"websocket": ws, "http": httpAgent} {
		g.Eventually(a.Received, 10*time.Second).Should(HaveLen(2), name)
		g.Expect(a.Received()[1].ConfigHash).To(Equal(collectorconfig.HashBytes(configB)))
	}
	g.Eventually(func() v1alpha1.AgentCounts { return collectorStatus(t, key).Counts }, 10*time.Second, 10*time.Millisecond).
		Should(Equal(v1alpha1.AgentCounts{Connected: 2, Healthy: 2, ConfigApplied: 1, ConfigFailed: 1}))
	st = collectorStatus(t, key)
	g.Expect(st.Agents[0].HostName).To(Equal("ws-host"), "the failing agent is listed first")
	g.Expect(st.Agents[0].ConfigStatus).To(Equal(v1alpha1.ConfigStatusFailed))
	g.Expect(st.Agents[0].Message).To(Equal("cannot start exporter debug: boom"))

	g.Eventually(func() []fleet.Event { return statuses.eventsOf(key) }, 10*time.Second).Should(ContainElements(
		And(HaveField("Reason", v1alpha1.EventRegistered), HaveField("Type", "Normal")),
		And(HaveField("Reason", v1alpha1.EventConfigApplied), HaveField("Message", ContainSubstring(collectorconfig.Hash(configA)[:12]))),
		And(HaveField("Reason", v1alpha1.EventConfigFailed), HaveField("Type", "Warning"),
			HaveField("Message", ContainSubstring("cannot start exporter debug: boom"))),
	))

	// The config is not re-sent on heartbeats or reconnects when the agent reports the current hash.
	g.Consistently(httpAgent.Received, 300*time.Millisecond).Should(HaveLen(2))

	// A disconnect makes the counts drop.
	ws.Stop()
	g.Eventually(func() v1alpha1.AgentCounts { return collectorStatus(t, key).Counts }, 10*time.Second, 10*time.Millisecond).
		Should(Equal(v1alpha1.AgentCounts{Connected: 1, Healthy: 1, ConfigApplied: 1}))
	g.Eventually(func() []fleet.Event { return statuses.eventsOf(key) }, 10*time.Second).Should(ContainElement(
		And(HaveField("Reason", v1alpha1.EventDisconnected), HaveField("Message", ContainSubstring("ws-host")))))
}

func TestReconnectWithSameHashGetsNoConfig(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	key, token := newCollector(t, ns, "c1", configA)
	fl.SetDesired(key, desired(configA))
	uid := uuid.Must(uuid.NewV7())

	conn := dial(t, token)
	g.Expect(wsSend(conn, fullState(uid, "h"))).To(Succeed())
	resp, err := wsRead(conn)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(resp.RemoteConfig).NotTo(BeNil())
	applied := &protobufs.AgentToServer{InstanceUid: uid[:], SequenceNum: 2, RemoteConfigStatus: &protobufs.RemoteConfigStatus{
		LastRemoteConfigHash: resp.RemoteConfig.ConfigHash, Status: protobufs.RemoteConfigStatuses_RemoteConfigStatuses_APPLIED,
	}}
	g.Expect(wsSend(conn, applied)).To(Succeed())
	_, err = wsRead(conn)
	g.Expect(err).NotTo(HaveOccurred())
	_ = conn.Close()

	// Reconnect: the supervisor starts with a delta that continues its sequence.
	conn = dial(t, token)
	g.Expect(wsSend(conn, &protobufs.AgentToServer{InstanceUid: uid[:], SequenceNum: 3})).To(Succeed())
	resp, err = wsRead(conn)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(resp.RemoteConfig).To(BeNil())
	g.Expect(resp.Flags & uint64(protobufs.ServerToAgentFlags_ServerToAgentFlags_ReportFullState)).To(BeZero())
}

func TestDeltaFromUnknownInstanceGetsReportFullState(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	key, token := newCollector(t, ns, "c1", configA)
	fl.SetDesired(key, desired(configA))
	full := uint64(protobufs.ServerToAgentFlags_ServerToAgentFlags_ReportFullState)

	for _, transport := range []string{"websocket", "http"} {
		t.Run(transport, func(t *testing.T) {
			uid := uuid.Must(uuid.NewV7())
			delta := &protobufs.AgentToServer{InstanceUid: uid[:], SequenceNum: 42, Capabilities: uint64(simagent.Capabilities)}
			state := fullState(uid, "returning")
			state.SequenceNum = 43
			var first, second *protobufs.ServerToAgent
			if transport == "http" {
				_, first = post(t, "Bearer "+token, marshal(t, delta), nil)
				_, second = post(t, "Bearer "+token, marshal(t, state), nil)
			} else {
				conn := dial(t, token)
				var err error
				g.Expect(wsSend(conn, delta)).To(Succeed())
				first, err = wsRead(conn)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(wsSend(conn, state)).To(Succeed())
				second, err = wsRead(conn)
				g.Expect(err).NotTo(HaveOccurred())
			}
			g.Expect(first.Flags & full).To(Equal(full))
			g.Expect(first.RemoteConfig).To(BeNil(), "nothing is pushed to an agent whose state is unknown")
			g.Expect(second.Flags & full).To(BeZero())
			g.Expect(second.RemoteConfig).NotTo(BeNil())
		})
	}
}

func TestOversizedMessageIsRefused(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	key, token := newCollector(t, ns, "c1", configA)
	fl.SetDesired(key, desired(configA))
	bystander := startAgent(t, token, simagent.Options{Host: "bystander"})
	g.Eventually(bystander.Received, 10*time.Second).Should(HaveLen(1))

	huge := fullState(uuid.Must(uuid.NewV7()), strings.Repeat("x", 2*maxMessageSize))
	// Just over the limit, so the client's write completes into the socket buffers before the server
	// refuses the message, and the test sees the refusal rather than a reset.
	over := fullState(uuid.Must(uuid.NewV7()), strings.Repeat("x", maxMessageSize+1))

	t.Run("websocket", func(t *testing.T) {
		g := NewWithT(t)
		conn := dial(t, token)
		g.Expect(wsSend(conn, over)).To(Succeed())
		_, err := wsRead(conn)
		g.Expect(websocket.IsCloseError(err, websocket.CloseMessageTooBig)).To(BeTrue(), "got %v", err)
	})
	t.Run("http", func(t *testing.T) {
		g := NewWithT(t)
		status, _ := post(t, "Bearer "+token, marshal(t, huge), nil)
		g.Expect(status).To(Equal(http.StatusRequestEntityTooLarge))
	})
	t.Run("gzip bomb", func(t *testing.T) {
		g := NewWithT(t)
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(marshal(t, huge))
		_ = zw.Close()
		g.Expect(buf.Len()).To(BeNumerically("<", maxMessageSize))
		status, _ := post(t, "Bearer "+token, buf.Bytes(), http.Header{"Content-Encoding": {"gzip"}})
		g.Expect(status).To(Equal(http.StatusRequestEntityTooLarge))
	})

	// The server and the other agent are unharmed.
	conn := dial(t, token)
	g.Expect(wsSend(conn, fullState(uuid.Must(uuid.NewV7()), "small"))).To(Succeed())
	resp, err := wsRead(conn)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(resp.RemoteConfig).NotTo(BeNil())
	fl.SetDesired(key, desired(configB))
	g.Eventually(bystander.Received, 10*time.Second).Should(HaveLen(2))
}

func TestRevocationClosesConnections(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	key, collectorToken := newCollector(t, ns, "c1", configA)
	et, token := newToken(t, ns, "host", "c1", pending(time.Hour), false)

	host := dial(t, token)
	g.Expect(wsSend(host, fullState(uuid.Must(uuid.NewV7()), "host"))).To(Succeed())
	_, err := wsRead(host)
	g.Expect(err).NotTo(HaveOccurred())
	pod := dial(t, collectorToken)
	g.Expect(wsSend(pod, fullState(uuid.Must(uuid.NewV7()), "pod"))).To(Succeed())
	_, err = wsRead(pod)
	g.Expect(err).NotTo(HaveOccurred())

	// Deleting the redeemed token revokes the host.
	g.Expect(k8s.Delete(ctx, et)).To(Succeed())
	_, err = wsRead(host)
	g.Expect(err).To(HaveOccurred())
	g.Expect(dialStatus(t, "Bearer "+token)).To(Equal(http.StatusUnauthorized))
	g.Expect(dialStatus(t, "Bearer "+collectorToken)).To(Equal(http.StatusSwitchingProtocols), "pods are not affected")

	// Setting spec.revoked revokes a redeemed host too.
	revokedET, revokedToken := newToken(t, ns, "to-revoke", "c1", pending(time.Hour), false)
	host2 := dial(t, revokedToken)
	g.Expect(wsSend(host2, fullState(uuid.Must(uuid.NewV7()), "host2"))).To(Succeed())
	resp, err := wsRead(host2)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(resp.ErrorResponse).To(BeNil())
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(revokedET), revokedET)).To(Succeed())
	revokedET.Spec.Revoked = true
	g.Expect(k8s.Update(ctx, revokedET)).To(Succeed())
	_, err = wsRead(host2)
	g.Expect(err).To(HaveOccurred())
	g.Expect(dialStatus(t, "Bearer "+revokedToken)).To(Equal(http.StatusUnauthorized))

	// Deleting the ManagedCollector closes its agents.
	var mc v1alpha1.ManagedCollector
	g.Expect(k8s.Get(ctx, key, &mc)).To(Succeed())
	g.Expect(k8s.Delete(ctx, &mc)).To(Succeed())
	_, err = wsRead(pod)
	g.Expect(err).To(HaveOccurred())
	g.Eventually(func() int { return dialStatus(t, "Bearer "+collectorToken) }, 10*time.Second, 10*time.Millisecond).
		Should(Equal(http.StatusUnauthorized))
}

func TestTwoHundredAgentsBoundedStatusWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("200 agents")
	}
	g := NewWithT(t)
	ns := newNamespace(t)
	key, token := newCollector(t, ns, "big", configA)
	fl.SetDesired(key, desired(configA))
	const n = 200

	before := statuses.writesOf(key)
	started := time.Now()
	agents := make([]*simagent.Agent, 0, n)
	// Pods come up over a couple of seconds, as a DaemonSet rollout does; this paces the load, it awaits
	// nothing. Several signal intervals pass, so coalescing is what keeps the writes down.
	pace := time.NewTicker(10 * time.Millisecond)
	defer pace.Stop()
	for i := range n {
		<-pace.C
		agents = append(agents, startAgent(t, token, simagent.Options{Host: fmt.Sprintf("node-%03d", i)}))
	}
	g.Eventually(func() v1alpha1.AgentCounts { return collectorStatus(t, key).Counts }, 60*time.Second, 20*time.Millisecond).
		Should(Equal(v1alpha1.AgentCounts{Connected: n, Healthy: n, ConfigApplied: n}))
	elapsed := time.Since(started)
	writes := statuses.writesOf(key) - before
	t.Logf("MEASURE %d agents: connected and applied in %v with %d status writes", n, elapsed, writes)
	// At most one write per second, plus the first one.
	g.Expect(writes).To(BeNumerically("<=", int(elapsed/time.Second)+2))
	st := collectorStatus(t, key)
	g.Expect(st.Agents).To(HaveLen(v1alpha1.MaxAgentsInStatus))

	// A thousand pods must not mean a thousand Events: each snapshot carries at most one per kind.
	events := statuses.eventsOf(key)
	registered := 0
	for _, e := range events {
		if e.Reason == v1alpha1.EventRegistered {
			registered++
		}
	}
	t.Logf("MEASURE %d agents: %d Events", n, len(events))
	g.Expect(registered).To(BeNumerically("<=", writes))
	g.Expect(len(events)).To(BeNumerically("<=", 3*writes))
	g.Expect(events).To(ContainElement(HaveField("Message", MatchRegexp(`^\d+ collectors, including `))))

	var wg sync.WaitGroup
	for _, a := range agents {
		wg.Add(1)
		go func() { defer wg.Done(); a.Stop() }()
	}
	wg.Wait()
	g.Eventually(func() int32 { return collectorStatus(t, key).Counts.Connected }, 30*time.Second, 20*time.Millisecond).Should(BeZero())
}

func TestSilentWebSocketIsClosedAfterIdleTimeout(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	key, token := newCollector(t, ns, "c1", configA)

	// A second server on the same cache and fleet, with a short idle timeout.
	srv, err := opampserver.New(opampserver.Options{Client: k8s, Credentials: credentials, APIReader: k8s, Fleet: fl, IdleTimeout: 300 * time.Millisecond})
	g.Expect(err).NotTo(HaveOccurred())
	l := listener.New(listener.Options{BindAddress: "127.0.0.1:0"})
	l.Handle(opampserver.Path, srv.Handler())
	l.AddConnContext(srv.ConnContext())
	g.Expect(l.Listen()).To(Succeed())
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { _ = l.Start(ctx); close(stopped) }()
	defer func() { cancel(); <-stopped }()

	conn, _, err := websocket.DefaultDialer.Dial("ws://"+l.Addr().String()+opampserver.Path, header("Bearer "+token))
	g.Expect(err).NotTo(HaveOccurred())
	defer conn.Close()
	g.Expect(wsSend(conn, fullState(uuid.Must(uuid.NewV7()), "quiet"))).To(Succeed())
	_, err = wsRead(conn)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(fl.Snapshot(key, "").Counts.Connected).To(Equal(int32(1)))

	began := time.Now()
	_, err = wsRead(conn)
	g.Expect(err).To(HaveOccurred(), "the server closes a connection that stopped heartbeating")
	g.Expect(time.Since(began)).To(BeNumerically("<", 5*time.Second))
	g.Eventually(func() int32 { return fl.Snapshot(key, "").Counts.Connected }, 5*time.Second, 10*time.Millisecond).Should(BeZero())
}
