package opampserver

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"unicode/utf8"

	"github.com/go-logr/logr"
	"github.com/google/uuid"
	"github.com/open-telemetry/opamp-go/protobufs"
	"google.golang.org/protobuf/proto"

	"github.com/linkmesh/linkmesh-operator/internal/collectorconfig"
	"github.com/linkmesh/linkmesh-operator/internal/fleet"
	"github.com/linkmesh/linkmesh-operator/test/framework/fakecreds"
)

// Bounds of the API that what report keeps ends up in (api/v1alpha1 AgentStatus and the Events' notes).
const (
	maxStatusHash    = 128
	maxStatusMessage = 1024
)

// FuzzPlainHTTPBody sends arbitrary bytes as the body of a plain-HTTP OpAMP request with a valid collector
// token, through Handler as the listener mounts it, and checks what an agent can make the server keep:
// every string report translates is valid UTF-8 and within the bounds status and Events take (a longer one
// fails the group's whole status write), the reply is a ServerToAgent for the instance that asked, and a
// message without a 16-byte instance UID is refused. Seeds: testdata/fuzz/FuzzPlainHTTPBody and the
// messages below.
func FuzzPlainHTTPBody(f *testing.F) {
	uid := uuid.MustParse("0190c8a2-0000-7000-8000-000000000001")
	for _, msg := range []*protobufs.AgentToServer{
		{InstanceUid: uid[:], SequenceNum: 1},
		{
			InstanceUid: uid[:], Capabilities: 0x7ff,
			AgentDescription: &protobufs.AgentDescription{
				IdentifyingAttributes:    []*protobufs.KeyValue{kv("service.name", "otelcol-contrib"), kv("service.version", "0.153.0")},
				NonIdentifyingAttributes: []*protobufs.KeyValue{kv("host.name", "web-01"), kv("k8s.pod.name", "p"), kv("k8s.node.name", "n")},
			},
			Health: &protobufs.ComponentHealth{Healthy: false, LastError: "boom", ComponentHealthMap: map[string]*protobufs.ComponentHealth{
				"pipeline:traces": {ComponentHealthMap: map[string]*protobufs.ComponentHealth{"receiver:otlp": {Healthy: false}}},
			}},
			RemoteConfigStatus: &protobufs.RemoteConfigStatus{
				LastRemoteConfigHash: collectorconfig.HashBytes(fakecreds.Config),
				Status:               protobufs.RemoteConfigStatuses_RemoteConfigStatuses_FAILED, ErrorMessage: "bad",
			},
			EffectiveConfig: &protobufs.EffectiveConfig{ConfigMap: &protobufs.AgentConfigMap{ConfigMap: map[string]*protobufs.AgentConfigFile{
				"": {Body: []byte(fakecreds.Config)},
			}}},
		},
		{InstanceUid: uid[:], AgentDisconnect: &protobufs.AgentDisconnect{}},
		{InstanceUid: []byte("short")},
	} {
		b, err := proto.Marshal(msg)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}

	coll := fakecreds.NewCollector("ns", "hosts")
	auth, c := fakecreds.Authority(coll)
	fl := fleet.New(fleet.Options{})
	desired := fleet.Desired{Revision: fleet.Revision{Config: fakecreds.Config, Hash: collectorconfig.Hash(fakecreds.Config)}}
	srv, err := New(Options{Client: c, Credentials: auth, APIReader: c, Fleet: fl, Logger: logr.Discard()})
	if err != nil {
		f.Fatal(err)
	}
	handler := srv.Handler()
	// opamp-go's plain-HTTP transport takes the connection from the request's context, as the listener's
	// ConnContext puts it there.
	serverSide, clientSide := net.Pipe()
	f.Cleanup(func() { _ = serverSide.Close(); _ = clientSide.Close() })
	connCtx := srv.ConnContext()(context.Background(), serverSide)

	f.Fuzz(func(t *testing.T, body []byte) {
		var msg protobufs.AgentToServer
		decoded := proto.Unmarshal(body, &msg) == nil
		if decoded {
			checkReport(t, report(&msg))
		}

		// A fresh group each time: the fleet keeps agents for minutes, and a fuzz run makes many.
		fl.Forget(coll.Key)
		fl.SetDesired(coll.Key, desired)
		req := httptest.NewRequestWithContext(connCtx, http.MethodPost, Path, bytes.NewReader(body))
		req.Header.Set("Content-Type", contentTypeProtobuf)
		req.Header.Set("Authorization", "Bearer "+coll.Token)
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, req)

		switch {
		case len(body) > DefaultMaxMessageSize:
			if w.Code != http.StatusRequestEntityTooLarge {
				t.Fatalf("a body of %d bytes got %d, want 413", len(body), w.Code)
			}
			return
		case !decoded:
			if w.Code != http.StatusBadRequest {
				t.Fatalf("an undecodable body got %d, want 400", w.Code)
			}
			return
		case w.Code != http.StatusOK:
			t.Fatalf("a decodable message got %d, want 200", w.Code)
		}
		var reply protobufs.ServerToAgent
		if err := proto.Unmarshal(w.Body.Bytes(), &reply); err != nil {
			t.Fatalf("the reply is not a ServerToAgent: %v", err)
		}
		if len(msg.InstanceUid) > 0 && !bytes.Equal(reply.InstanceUid, msg.InstanceUid) {
			t.Fatalf("the reply is for instance %x, the request from %x", reply.InstanceUid, msg.InstanceUid)
		}
		if _, err := uuid.FromBytes(msg.InstanceUid); err != nil && reply.ErrorResponse == nil {
			t.Fatalf("a message with a %d-byte instance UID was not refused", len(msg.InstanceUid))
		}
	})
}

func kv(k, v string) *protobufs.KeyValue {
	return &protobufs.KeyValue{Key: k, Value: &protobufs.AnyValue{Value: &protobufs.AnyValue_StringValue{StringValue: v}}}
}

// checkReport fails t when r keeps a string that is invalid UTF-8 or longer than what it ends up in takes.
func checkReport(t *testing.T, r fleet.Report) {
	t.Helper()
	check := func(what, s string, max int) {
		t.Helper()
		if len(s) > max {
			t.Fatalf("report keeps a %s of %d bytes, more than the %d it ends up in takes", what, len(s), max)
		}
		if !utf8.ValidString(s) {
			t.Fatalf("report keeps a %s that is not valid UTF-8: %q", what, s)
		}
	}
	if d := r.Description; d != nil {
		for what, s := range map[string]string{"host name": d.HostName, "pod name": d.PodName, "node name": d.NodeName, "service version": d.ServiceVersion} {
			check(what, s, maxAttributeLen)
		}
		if len(d.NonIdentifying) > maxAttributes {
			t.Fatalf("report keeps %d attributes, more than %d", len(d.NonIdentifying), maxAttributes)
		}
		for k, v := range d.NonIdentifying {
			check("attribute name", k, maxAttributeLen)
			check("attribute value", v, maxAttributeLen)
		}
	}
	if h := r.Health; h != nil {
		check("health status", h.Status, maxAttributeLen)
		check("last error", h.LastError, maxStatusMessage)
		if len(h.UnhealthyComponents) > maxComponentNames+1 {
			t.Fatalf("report keeps %d unhealthy component names, more than %d", len(h.UnhealthyComponents), maxComponentNames+1)
		}
		for _, n := range h.UnhealthyComponents {
			check("component name", n, maxAttributeLen)
		}
		if named := min(len(h.UnhealthyComponents), maxComponentNames); h.Components < named {
			t.Fatalf("report counts %d components, fewer than the %d unhealthy ones it names", h.Components, named)
		}
	}
	if rc := r.RemoteConfig; rc != nil {
		check("remote config hash", rc.Hash, maxStatusHash)
		check("remote config message", rc.Message, maxStatusMessage)
	}
}
