package opampserver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/open-telemetry/opamp-go/protobufs"
	opamptypes "github.com/open-telemetry/opamp-go/server/types"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/bounded"
	"github.com/linkmesh/linkmesh-operator/internal/collectorconfig"
	"github.com/linkmesh/linkmesh-operator/internal/credential"
	"github.com/linkmesh/linkmesh-operator/internal/fleet"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
)

// serverCapabilities are what this server does, sent in every answer.
const serverCapabilities = uint64(protobufs.ServerCapabilities_ServerCapabilities_AcceptsStatus |
	protobufs.ServerCapabilities_ServerCapabilities_OffersRemoteConfig |
	protobufs.ServerCapabilities_ServerCapabilities_AcceptsEffectiveConfig)

// Bounds on what an agent's description may put in memory.
const (
	maxAttributes     = 64
	maxAttributeLen   = 256
	maxComponentNames = 5
	maxComponentDepth = 8
	maxHashBytes      = 64
)

// session is one OpAMP connection: a WebSocket for its lifetime, or a single plain-HTTP request. It is the
// fleet.Link of a WebSocket agent.
type session struct {
	server    *Server
	principal *credential.Principal
	http      bool
	// fullKey names the credential and address for the refusals of a full ManagedCollector.
	fullKey string

	mu     sync.Mutex
	conn   opamptypes.Connection
	ws     *websocket.Conn
	uid    string
	rawUID []byte
	// assigned is the instance UID this server gave the agent in place of one bound elsewhere; its next
	// message carries it.
	assigned string

	kick chan struct{}
	done chan struct{}
}

var _ fleet.Link = (*session)(nil)

func (c *session) callbacks() opamptypes.ConnectionCallbacks {
	return opamptypes.ConnectionCallbacks{
		OnConnected:       c.onConnected,
		OnMessage:         c.onMessage,
		OnConnectionClose: c.onClose,
	}
}

func (c *session) onConnected(_ context.Context, conn opamptypes.Connection) {
	c.mu.Lock()
	c.conn = conn
	c.mu.Unlock()
	if c.http {
		return
	}
	ws := websocketOf(conn)
	if ws == nil {
		// Without the WebSocket we cannot bound message sizes; refuse rather than serve unbounded.
		c.server.log.Error(errors.New("opamp-go connection has no WebSocket"), "Closing an OpAMP connection")
		_ = conn.Disconnect()
		return
	}
	// A larger message fails the read with websocket.ErrReadLimit and a 1009 close frame; opamp-go then
	// closes the connection. Other connections are unaffected.
	ws.SetReadLimit(c.server.maxSize)
	c.mu.Lock()
	c.ws = ws
	c.mu.Unlock()
	c.extendDeadline()
	go c.pushLoop()
}

// extendDeadline gives a WebSocket agent IdleTimeout to send its next message; opamp-go sets no read
// deadline, so a silent peer would otherwise hold its goroutine forever.
func (c *session) extendDeadline() {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if c.http || conn == nil {
		return
	}
	// A socket deadline is wall-clock time, not the injected clock's.
	_ = conn.Connection().SetReadDeadline(time.Now().Add(c.server.idle))
}

func (c *session) onMessage(ctx context.Context, conn opamptypes.Connection, msg *protobufs.AgentToServer) *protobufs.ServerToAgent {
	id, err := uuid.FromBytes(msg.InstanceUid)
	if err != nil {
		return c.reject(ctx, conn, msg, protobufs.ServerErrorResponseType_ServerErrorResponseType_BadRequest,
			"instance_uid must be 16 bytes")
	}
	uid := id.String()

	c.mu.Lock()
	bound, assigned := c.uid, c.assigned
	c.mu.Unlock()
	switch {
	case bound == "" || (assigned != "" && uid == assigned):
		if err := c.admit(ctx, uid, msg); err != nil {
			if errors.Is(err, errInstanceTaken) {
				return c.reassign(uid, msg)
			}
			return c.refuse(ctx, conn, msg, uid, err)
		}
		c.mu.Lock()
		c.uid, c.rawUID, c.assigned = uid, msg.InstanceUid, ""
		c.mu.Unlock()
	case bound != uid:
		// The only instance UID change this server accepts is to the one it assigned; any other is another
		// agent on the same connection.
		return c.reject(ctx, conn, msg, protobufs.ServerErrorResponseType_ServerErrorResponseType_BadRequest,
			"instance_uid changed on an open connection")
	}
	c.extendDeadline()

	var link fleet.Link
	if !c.http {
		link = c
	}
	if msg.AgentDisconnect != nil {
		c.server.fleet.Disconnect(uid, link)
		return nil
	}
	reply := c.server.fleet.Observe(uid, c.principal.Membership, report(msg), link)
	switch {
	case reply.Refused != "":
		if reply.Refused == fleet.RefusedGroupFull {
			c.server.fullGroups.refused(c.fullKey, c.server.clock.Now())
		}
		c.server.log.Info("Refusing an OpAMP agent", "instanceUID", uid, "collector", c.principal.Collector.String(),
			"credential", c.principal.Fingerprint, "reason", string(reply.Refused))
		return c.reject(ctx, conn, msg, protobufs.ServerErrorResponseType_ServerErrorResponseType_Unavailable,
			string(reply.Refused))
	case reply.NewInstanceUID != "":
		return c.reassignTo(uid, reply.NewInstanceUID, msg)
	}
	resp := &protobufs.ServerToAgent{InstanceUid: msg.InstanceUid, Capabilities: serverCapabilities}
	if reply.ReportFullState {
		resp.Flags |= uint64(protobufs.ServerToAgentFlags_ServerToAgentFlags_ReportFullState)
	}
	if reply.Restart {
		resp.Command = &protobufs.ServerToAgentCommand{Type: protobufs.CommandType_CommandType_Restart}
	}
	if reply.Config != nil {
		resp.RemoteConfig = c.server.remoteConfig(*reply.Config)
	}
	if !reply.ReportFullState {
		c.offerOwnMetrics(uid, link, resp)
	}
	return resp
}

// errInstanceTaken means the agent's instance UID is bound to another credential: an EnrollmentToken that
// another instance did not redeem.
var errInstanceTaken = errors.New("instance UID bound to an enrollment token")

// admit checks the instance at its first message: it is where the instance UID becomes known.
func (c *session) admit(ctx context.Context, uid string, msg *protobufs.AgentToServer) error {
	// The group may have been deleted between the upgrade and this message.
	if err := c.server.credentials.CheckCollector(ctx, c.principal.Collector); err != nil {
		return err
	}
	if c.principal.Source != credential.SourceHost {
		// A host's instance UID belongs to the EnrollmentToken it redeemed, on every replica: a pod credential
		// presenting it is given a UID of its own.
		bound, err := c.server.credentials.RedeemedByInstance(ctx, uid)
		if err != nil {
			return err
		}
		if bound {
			return errInstanceTaken
		}
		return nil
	}
	hostName := ""
	if d := describe(msg.AgentDescription); d != nil {
		hostName = d.HostName
	}
	ctx, cancel := context.WithTimeout(ctx, c.server.redeemTimeout)
	defer cancel()
	return c.server.admitHost(ctx, c.principal, uid, hostName)
}

// reassign answers an agent whose instance UID is taken with a new one (the OpAMP spec's answer to a
// duplicate UID), takes nothing else from the message, and accepts the new UID on this connection.
func (c *session) reassign(uid string, msg *protobufs.AgentToServer) *protobufs.ServerToAgent {
	return c.reassignTo(uid, uuid.Must(uuid.NewV7()).String(), msg)
}

func (c *session) reassignTo(uid, newUID string, msg *protobufs.AgentToServer) *protobufs.ServerToAgent {
	id := uuid.MustParse(newUID)
	c.server.log.Info("Giving an OpAMP agent a new instance UID: its own is bound to another credential",
		"instanceUID", uid, "newInstanceUID", newUID, "collector", c.principal.Collector.String(),
		"credential", c.principal.Fingerprint)
	c.mu.Lock()
	c.assigned = newUID
	c.mu.Unlock()
	return &protobufs.ServerToAgent{
		InstanceUid:         msg.InstanceUid,
		Capabilities:        serverCapabilities,
		AgentIdentification: &protobufs.AgentIdentification{NewInstanceUid: id[:]},
	}
}

func (c *session) refuse(ctx context.Context, conn opamptypes.Connection, msg *protobufs.AgentToServer, uid string, err error) *protobufs.ServerToAgent {
	log := c.server.log.WithValues("instanceUID", uid, "collector", c.principal.Collector.String(),
		"credential", c.principal.Fingerprint)
	switch {
	case errors.Is(err, credential.ErrTokenTaken):
		log.Info("Refusing an enrollment token redeemed by another instance",
			"enrollmentToken", c.principal.Token.String())
		return c.reject(ctx, conn, msg, protobufs.ServerErrorResponseType_ServerErrorResponseType_BadRequest,
			"this enrollment token was redeemed by another collector instance; create a new EnrollmentToken")
	case errors.Is(err, credential.ErrUnauthorized):
		log.Info("Refusing an OpAMP agent whose credential is no longer valid")
		return c.reject(ctx, conn, msg, protobufs.ServerErrorResponseType_ServerErrorResponseType_BadRequest,
			"unauthorized")
	default:
		log.Error(err, "Cannot admit an OpAMP agent")
		return c.reject(ctx, conn, msg, protobufs.ServerErrorResponseType_ServerErrorResponseType_Unavailable,
			"the server cannot admit the agent right now; retry later")
	}
}

// reject answers with a ServerErrorResponse. A WebSocket is closed after the answer; a plain-HTTP request
// ends with it anyway.
func (c *session) reject(ctx context.Context, conn opamptypes.Connection, msg *protobufs.AgentToServer,
	kind protobufs.ServerErrorResponseType, text string,
) *protobufs.ServerToAgent {
	resp := &protobufs.ServerToAgent{
		InstanceUid:   msg.InstanceUid,
		ErrorResponse: &protobufs.ServerErrorResponse{Type: kind, ErrorMessage: text},
	}
	if c.http {
		return resp
	}
	if err := conn.Send(ctx, resp); err != nil {
		c.server.log.V(1).Info("Cannot send an error response", "error", err.Error())
	}
	_ = conn.Disconnect()
	return nil
}

func (c *session) onClose(opamptypes.Connection) {
	if c.http {
		// A plain-HTTP agent is connected as long as it polls; the fleet's idle sweep notices when it stops.
		return
	}
	close(c.done)
	c.mu.Lock()
	uid := c.uid
	c.mu.Unlock()
	if uid != "" {
		c.server.fleet.Disconnect(uid, c)
	}
}

// Notify implements fleet.Link.
func (c *session) Notify() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Close implements fleet.Link.
func (c *session) Close() {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn != nil && !c.http {
		_ = conn.Disconnect()
	}
}

// pushLoop sends configs the fleet asks for outside the agent's request-response cycle. The listener puts
// a timeout on every write, so a stuck agent cannot hold it.
func (c *session) pushLoop() {
	for {
		select {
		case <-c.done:
			return
		case <-c.kick:
		}
		c.mu.Lock()
		uid, raw, conn := c.uid, c.rawUID, c.conn
		c.mu.Unlock()
		d, ok := c.server.fleet.Take(uid, c)
		if !ok {
			continue
		}
		msg := &protobufs.ServerToAgent{InstanceUid: raw, Capabilities: serverCapabilities, RemoteConfig: c.server.remoteConfig(d)}
		if err := conn.Send(context.Background(), msg); err != nil {
			c.server.log.V(1).Info("Cannot push a config; closing the connection", "instanceUID", uid, "error", err.Error())
			_ = conn.Disconnect()
			return
		}
	}
}

// websocketOf digs the gorilla connection out of opamp-go's unexported wsConnection: v0.23.0 offers no
// read limit and no other way to set one. TestOversizedMessageRefused fails if an opamp-go upgrade moves it.
func websocketOf(conn opamptypes.Connection) *websocket.Conn {
	v := reflect.ValueOf(conn)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return nil
	}
	f := v.Elem().FieldByName("wsConn")
	if !f.IsValid() || f.Type() != reflect.TypeFor[*websocket.Conn]() {
		return nil
	}
	return *(**websocket.Conn)(unsafe.Pointer(f.UnsafeAddr()))
}

// remoteConfig is the revision under one file name, with config_hash its hash: the supervisor rejects a
// status report without one. It is built once per revision and shared by every answer that carries it
// (opamp-go only reads it), so a fan-out to ten thousand agents builds one, not ten thousand.
func (s *Server) remoteConfig(d fleet.Revision) *protobufs.AgentRemoteConfig {
	if v, ok := s.remoteConfigs.Load(d.Hash); ok {
		return v.(*protobufs.AgentRemoteConfig)
	}
	hash, err := hex.DecodeString(d.Hash)
	if err != nil {
		hash = collectorconfig.HashBytes(d.Config)
	}
	rc := &protobufs.AgentRemoteConfig{Config: &protobufs.AgentConfigMap{}, ConfigHash: hash}
	if d.Config != "" {
		// No file at all is the empty config: the supervisor stops its collector. A drift heal sends it.
		rc.Config.ConfigMap = map[string]*protobufs.AgentConfigFile{
			naming.CollectorConfigKey: {Body: []byte(d.Config), ContentType: "text/yaml"},
		}
	}
	if s.remoteConfigCount.Add(1) > maxCachedRemoteConfigs {
		// A few revisions are in use at a time (a rollout has two, a heal one more); old ones go.
		s.remoteConfigs.Clear()
		s.remoteConfigCount.Store(1)
	}
	s.remoteConfigs.Store(d.Hash, rc)
	return rc
}

// maxCachedRemoteConfigs bounds the built RemoteConfigs kept.
const maxCachedRemoteConfigs = 16

// report translates a message into the fleet's terms, keeping only bounded strings.
func report(msg *protobufs.AgentToServer) fleet.Report {
	r := fleet.Report{
		SequenceNum:         msg.SequenceNum,
		Description:         describe(msg.AgentDescription),
		Capabilities:        msg.Capabilities,
		AcceptsRemoteConfig: msg.Capabilities&uint64(protobufs.AgentCapabilities_AgentCapabilities_AcceptsRemoteConfig) != 0,
	}
	if h := msg.Health; h != nil {
		total, unhealthy, down := components(h.ComponentHealthMap, 0)
		sort.Strings(unhealthy)
		if down > len(unhealthy) || len(unhealthy) > maxComponentNames {
			shown := min(len(unhealthy), maxComponentNames)
			unhealthy = append(unhealthy[:shown], fmt.Sprintf("and %d more", down-shown))
		}
		r.Health = &fleet.Health{
			Healthy:             h.Healthy,
			Status:              bounded.Truncate(h.Status, maxAttributeLen),
			LastError:           bounded.Truncate(h.LastError, 1024),
			Components:          total,
			UnhealthyComponents: unhealthy,
		}
	}
	if s := msg.RemoteConfigStatus; s != nil {
		r.RemoteConfig = &fleet.RemoteConfigReport{
			// Cut to what status.agents[].configHash takes (128 hex digits): a longer one fails the group's
			// whole status write, and is not a hash this server sent (those are sha256) anyway.
			Hash:    hex.EncodeToString(s.LastRemoteConfigHash[:min(len(s.LastRemoteConfigHash), maxHashBytes)]),
			Status:  configStatus(s.Status),
			Message: bounded.Truncate(s.ErrorMessage, 1024),
		}
	}
	if e := msg.EffectiveConfig; e != nil && e.ConfigMap != nil {
		h := effectiveHash(e.ConfigMap)
		r.EffectiveConfigHash = &h
		body := effectiveBody(e.ConfigMap)
		r.EffectiveConfig = &body
	}
	return r
}

func configStatus(s protobufs.RemoteConfigStatuses) v1alpha1.ConfigStatus {
	switch s {
	case protobufs.RemoteConfigStatuses_RemoteConfigStatuses_APPLIED:
		return v1alpha1.ConfigStatusApplied
	case protobufs.RemoteConfigStatuses_RemoteConfigStatuses_APPLYING:
		return v1alpha1.ConfigStatusApplying
	case protobufs.RemoteConfigStatuses_RemoteConfigStatuses_FAILED:
		return v1alpha1.ConfigStatusFailed
	default:
		return v1alpha1.ConfigStatusUnset
	}
}

// effectiveBody is the effective config as one document: the supervisor reports a single file; several are
// joined in name order.
func effectiveBody(m *protobufs.AgentConfigMap) string {
	names := make([]string, 0, len(m.ConfigMap))
	for name := range m.ConfigMap {
		names = append(names, name)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, name := range names {
		b.Write(m.ConfigMap[name].GetBody())
		b.WriteString("\n")
	}
	return b.String()
}

// effectiveHash is the sha256 of a single-file config's body, so it equals config_hash when the collector
// runs the pushed config unchanged; of all files in name order otherwise.
func effectiveHash(m *protobufs.AgentConfigMap) string {
	if len(m.ConfigMap) == 1 {
		for _, f := range m.ConfigMap {
			return collectorconfig.Hash(string(f.GetBody()))
		}
	}
	names := make([]string, 0, len(m.ConfigMap))
	for n := range m.ConfigMap {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		h.Write([]byte(n))
		h.Write([]byte{0})
		h.Write(m.ConfigMap[n].GetBody())
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// components counts the leaf components of a health map and the unhealthy ones (down), and names at most
// maxComponentNames of the unhealthy ones.
func components(m map[string]*protobufs.ComponentHealth, depth int) (total int, names []string, down int) {
	if depth > maxComponentDepth {
		return 0, nil, 0
	}
	for name, ch := range m {
		if len(ch.GetComponentHealthMap()) > 0 {
			t, u, d := components(ch.ComponentHealthMap, depth+1)
			total += t
			down += d
			for _, n := range u {
				if len(names) < maxComponentNames {
					names = append(names, bounded.Truncate(name+"/"+n, maxAttributeLen))
				}
			}
			continue
		}
		total++
		if !ch.GetHealthy() {
			down++
			if len(names) < maxComponentNames {
				names = append(names, bounded.Truncate(name, maxAttributeLen))
			}
		}
	}
	return total, names, down
}

// describe reads the attributes the status shows from both attribute lists: the supervisor reports
// host.name as non-identifying, pods add k8s.pod.name and k8s.node.name there.
func describe(d *protobufs.AgentDescription) *fleet.Description {
	if d == nil {
		return nil
	}
	out := &fleet.Description{NonIdentifying: map[string]string{}}
	set := func(kv *protobufs.KeyValue) string {
		v := bounded.Truncate(anyString(kv.GetValue()), maxAttributeLen)
		switch kv.GetKey() {
		case "host.name":
			out.HostName = v
		case "k8s.pod.name":
			out.PodName = v
		case "k8s.node.name":
			out.NodeName = v
		case "service.version":
			out.ServiceVersion = v
		}
		return v
	}
	for _, kv := range d.IdentifyingAttributes {
		set(kv)
	}
	for _, kv := range d.NonIdentifyingAttributes {
		v := set(kv)
		if len(out.NonIdentifying) < maxAttributes {
			out.NonIdentifying[bounded.Truncate(kv.GetKey(), maxAttributeLen)] = v
		}
	}
	return out
}

func anyString(v *protobufs.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *protobufs.AnyValue_StringValue:
		return x.StringValue
	case *protobufs.AnyValue_BoolValue:
		return fmt.Sprint(x.BoolValue)
	case *protobufs.AnyValue_IntValue:
		return fmt.Sprint(x.IntValue)
	case *protobufs.AnyValue_DoubleValue:
		return fmt.Sprint(x.DoubleValue)
	default:
		return ""
	}
}
