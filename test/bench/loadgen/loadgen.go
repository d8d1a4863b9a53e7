// Package loadgen runs a fleet of simulated upstream supervisors (test/framework/simagent, real opamp-go
// clients) for the fleet benchmark, and reports how far they got: how many are connected, which config
// hashes they received, applied or failed, and when the last of them did.
//
// A load generator is a process of its own (`bench load`), driven by JSON lines: Commands on stdin,
// Events on stdout. One process holds at most a few thousand agents, as each holds a socket and the
// hard open-files limit is per process.
package loadgen

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/open-telemetry/opamp-go/protobufs"

	"github.com/linkmesh/linkmesh-operator/internal/fleet"
	"github.com/linkmesh/linkmesh-operator/test/framework/simagent"
)

// Options of a fleet.
type Options struct {
	// Servers are OpAMP server addresses (host:port). Agent i starts on Servers[i mod Spread] and moves on
	// to the next when a connection attempt fails, as a Service spreads agents and sends a reconnecting
	// one to a live replica: first to the servers beyond Spread, then to the others in order.
	Servers []string
	// Spread is how many of Servers the agents start on; zero is all. The rest are stand-bys that take
	// the agents of a server that fails.
	Spread int
	// Tokens are the bearer tokens: one for every agent, or one per agent (EnrollmentTokens).
	Tokens []string
	// Count is how many agents to run.
	Count int
	// First is the index of the first agent, so that the agents of several processes have distinct
	// host names and are spread the same way whatever the split.
	First int
	// Pods makes the agents report k8s.pod.name and k8s.node.name, as DaemonSet pods do; otherwise they
	// are hosts.
	Pods bool
	// Prefix starts every host and pod name.
	Prefix string
	// ApplyDelay is the simulated collector restart between APPLYING and APPLIED.
	ApplyDelay time.Duration
	// Heartbeat is the agents' heartbeat interval; zero keeps opamp-go's 30 s.
	Heartbeat time.Duration
	// Fail makes a fraction of the agents report FAILED for a config hash.
	Fail FailRule
	// MaxDescription pads every agent's description to the most the OpAMP server keeps of one
	// (MaxAttributes non-identifying attributes, each key and value MaxAttributeLen long), as a client out
	// to cost the operator memory would.
	MaxDescription bool
	// Probe, when set, makes every connected agent send a status message the server must answer (see
	// simagent.Agent.Ping) this often, and times the answers: Progress.Probes.
	Probe time.Duration
	// StopOnRefusal stops an agent at its first refusal (a ServerErrorResponse, or RefusedAtUpgrade), so
	// that each instance UID asks once (or twice: opamp-go may reconnect before the stop takes effect);
	// otherwise it does what opamp-go does: reconnect at once after a ServerErrorResponse, and after an
	// HTTP error at the upgrade when its Retry-After says.
	StopOnRefusal bool
}

// RefusedAtUpgrade is the refusal an agent is counted with (Progress.Refused) when the server answered its
// WebSocket upgrade with an HTTP error status (401, or 503 with Retry-After) rather than a
// ServerErrorResponse: opamp-go hands its callback gorilla's websocket.ErrBadHandshake, without the status.
const RefusedAtUpgrade = "refused at the WebSocket upgrade with an HTTP error status"

// The bounds internal/opampserver keeps of an agent description (maxAttributes, maxAttributeLen): beyond
// them it drops attributes and truncates keys and values, so a larger description costs it no more.
const (
	MaxAttributes   = 64
	MaxAttributeLen = 256
)

// padAttributes adds attributes to attrs until the description's non-identifying attributes (host.name
// and attrs) are MaxAttributes, each key and value MaxAttributeLen long.
func padAttributes(attrs map[string]string, index int) map[string]string {
	if attrs == nil {
		attrs = map[string]string{}
	}
	for j := 0; len(attrs) < MaxAttributes-1; j++ {
		k := fmt.Sprintf("pad.%02d.", j)
		v := fmt.Sprintf("agent-%05d-%02d-", index, j)
		attrs[k+strings.Repeat("k", MaxAttributeLen-len(k))] = v + strings.Repeat("v", MaxAttributeLen-len(v))
	}
	return attrs
}

// FailRule makes a fraction of the agents fail one config hash: those whose index hashes below Fraction,
// so the failing agents are spread over processes and servers, and the same ones fail in every run; or,
// ByRank, those a progressive rollout offers a new config first.
type FailRule struct {
	// Hash is the hex config hash to fail; empty fails nothing.
	Hash string `json:"hash,omitempty"`
	// Fraction of the agents, 0 to 1.
	Fraction float64 `json:"fraction,omitempty"`
	// ByRank picks the agents whose rollout rank (fleet.Rank of the instance UID, no canary selector) is
	// in the lowest Fraction of the rank space: those a progressive rollout's first step of Fraction of
	// the fleet offers the config to. Otherwise the agents are picked by index, whatever their rank.
	ByRank bool `json:"byRank,omitempty"`
}

// picks says whether the agent with index i and instance UID uid is one of the fraction.
func (r FailRule) picks(i int, uid string) bool {
	if r.Hash == "" || r.Fraction <= 0 {
		return false
	}
	if r.ByRank {
		// Without a canary selector every rank has its top bit set; the rest orders the agents.
		const top = 1 << 63
		return float64(fleet.Rank(uid, false)&^top)/top < r.Fraction
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(i))
	sum := sha256.Sum256(b[:])
	return float64(binary.BigEndian.Uint32(sum[:4]))/float64(1<<32) < r.Fraction
}

// Validate reports what is wrong with o.
func (o Options) Validate() error {
	var errs []error
	if len(o.Servers) == 0 {
		errs = append(errs, errors.New("no server address"))
	}
	if o.Spread < 0 || o.Spread > len(o.Servers) {
		errs = append(errs, fmt.Errorf("spread %d is not between 0 and the %d servers", o.Spread, len(o.Servers)))
	}
	if o.Count <= 0 {
		errs = append(errs, fmt.Errorf("count must be positive, not %d", o.Count))
	}
	if len(o.Tokens) != 1 && len(o.Tokens) != o.Count {
		errs = append(errs, fmt.Errorf("%d tokens for %d agents: give one token for all or one per agent", len(o.Tokens), o.Count))
	}
	if o.Fail.Fraction < 0 || o.Fail.Fraction > 1 {
		errs = append(errs, fmt.Errorf("fail fraction %v is not between 0 and 1", o.Fail.Fraction))
	}
	if o.Probe < 0 {
		errs = append(errs, fmt.Errorf("probe interval %s is negative", o.Probe))
	}
	return errors.Join(errs...)
}

// Fleet is a running set of agents.
type Fleet struct {
	members []*member
	fail    atomic.Pointer[FailRule]
	// failures counts failed connection attempts over all agents, handshakes the connections made.
	failures, handshakes atomic.Int64
	// refusals counts the ServerErrorResponses over all agents.
	refusals atomic.Int64
	// probes are the round trips timed since the last Mark.
	probes    atomic.Pointer[probeStats]
	stopProbe chan struct{}
	probeDone sync.WaitGroup
}

// member is one agent and what it has done so far, read by Progress without locks.
type member struct {
	index int
	uid   string
	// agent is set once simagent.New returns; the agent's callbacks may run before.
	agent atomic.Pointer[simagent.Agent]
	// refusal is the last ServerErrorResponse's message, or RefusedAtUpgrade; pingSent when the unanswered
	// ping went out (Unix nanoseconds), zero for none.
	refusal  atomic.Pointer[string]
	pingSent atomic.Int64

	connected   atomic.Bool
	connectedAt atomic.Int64
	// reconnected is set by a connection made after the last Mark.
	reconnected atomic.Bool

	received  atomic.Pointer[string]
	outcome   atomic.Pointer[string]
	failed    atomic.Bool
	outcomeAt atomic.Int64

	// running is the config body the simulated collector runs: the last one it did not fail; offered
	// are the hashes of every config it was sent, rejected of those it reported FAILED.
	mu       sync.Mutex
	running  string
	offered  []string
	rejected []string
}

// Start starts every agent. opamp-go connects in the background, so Start returns before they connect.
func Start(o Options) (*Fleet, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("load generator: %w", err)
	}
	f := &Fleet{members: make([]*member, o.Count), stopProbe: make(chan struct{})}
	f.fail.Store(&o.Fail)
	f.probes.Store(newProbeStats())
	for k := range o.Count {
		i := o.First + k
		uid := uuid.Must(uuid.NewV7())
		m := &member{index: i, uid: uid.String()}
		f.members[k] = m
		token := o.Tokens[0]
		if len(o.Tokens) > 1 {
			token = o.Tokens[k]
		}
		name := fmt.Sprintf("%s-%05d", o.Prefix, i)
		refused := func(msg string) {
			m.refusal.Store(&msg)
			f.refusals.Add(1)
			if o.StopOnRefusal {
				if a := m.agent.Load(); a != nil {
					// Not from opamp-go's callback, which Stop waits for.
					go a.Stop()
				}
			}
		}
		opts := simagent.Options{
			UID:            uid,
			Host:           name,
			OwnMetrics:     true,
			ReportApplying: true,
			ApplyDelay:     o.ApplyDelay,
			Heartbeat:      o.Heartbeat,
			Apply:          f.apply(m),
			Effective:      m.effective,
			OnConnect: func() {
				m.connectedAt.Store(time.Now().UnixNano())
				m.connected.Store(true)
				m.reconnected.Store(true)
				f.handshakes.Add(1)
			},
			OnConnectFailed: func(err error) {
				m.connected.Store(false)
				f.failures.Add(1)
				if errors.Is(err, websocket.ErrBadHandshake) {
					refused(RefusedAtUpgrade)
				}
			},
			OnConfig:        m.onConfig,
			OnServerMessage: func() { f.answered(m) },
			OnServerError: func(e *protobufs.ServerErrorResponse) {
				refused(e.GetErrorMessage())
			},
		}
		if o.Pods {
			opts.Host = "node-" + name
			opts.Attributes = map[string]string{"k8s.pod.name": name, "k8s.node.name": "node-" + name}
		}
		if o.MaxDescription {
			opts.Attributes = padAttributes(opts.Attributes, i)
		}
		spread := o.Spread
		if spread == 0 {
			spread = len(o.Servers)
		}
		start := i % spread
		first := o.Servers[start]
		opts.Fallback = append(opts.Fallback, o.Servers[spread:]...)
		for j := 1; j < spread; j++ {
			opts.Fallback = append(opts.Fallback, o.Servers[(start+j)%spread])
		}
		a, err := simagent.New(first, token, opts)
		if err != nil {
			f.Stop()
			return nil, fmt.Errorf("starting agent %d: %w", i, err)
		}
		m.agent.Store(a)
	}
	if o.Probe > 0 {
		f.probeDone.Go(func() { f.probe(o.Probe) })
	}
	return f, nil
}

// probe pings every connected agent that has no ping outstanding, every interval.
func (f *Fleet) probe(interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-f.stopProbe:
			return
		case <-tick.C:
		}
		for _, m := range f.members {
			a := m.agent.Load()
			if a == nil || !m.connected.Load() || !m.pingSent.CompareAndSwap(0, time.Now().UnixNano()) {
				continue
			}
			if err := a.Ping(); err != nil {
				m.pingSent.Store(0)
				continue
			}
			f.probes.Load().sent.Add(1)
		}
	}
}

// answered takes a message from the server as the answer to the agent's outstanding ping, if any: opamp-go
// sends one message at a time and the server answers each, so the next message after a ping is its answer
// or one that was on its way (which makes the round trip look shorter, never longer).
func (f *Fleet) answered(m *member) {
	if sent := m.pingSent.Swap(0); sent != 0 {
		f.probes.Load().add(time.Duration(time.Now().UnixNano() - sent))
	}
}

func (f *Fleet) apply(m *member) simagent.ApplyFunc {
	return func(rc *protobufs.AgentRemoteConfig) (protobufs.RemoteConfigStatuses, string) {
		h := hex.EncodeToString(rc.ConfigHash)
		m.received.Store(&h)
		m.mu.Lock()
		if !slices.Contains(m.offered, h) {
			m.offered = append(m.offered, h)
		}
		m.mu.Unlock()
		if r := f.fail.Load(); r.Hash == h && r.picks(m.index, m.uid) {
			m.mu.Lock()
			if !slices.Contains(m.rejected, h) {
				m.rejected = append(m.rejected, h)
			}
			m.mu.Unlock()
			return protobufs.RemoteConfigStatuses_RemoteConfigStatuses_FAILED, "simulated failure: the collector rejected this config"
		}
		m.mu.Lock()
		m.running = configBody(rc)
		m.mu.Unlock()
		return protobufs.RemoteConfigStatuses_RemoteConfigStatuses_APPLIED, ""
	}
}

// effective is what the collector runs after a config: the new one, or the previous one if it failed.
func (m *member) effective(*protobufs.AgentRemoteConfig) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.running
}

func (m *member) onConfig(rc *protobufs.AgentRemoteConfig, status protobufs.RemoteConfigStatuses) {
	h := hex.EncodeToString(rc.ConfigHash)
	m.failed.Store(status == protobufs.RemoteConfigStatuses_RemoteConfigStatuses_FAILED)
	m.outcome.Store(&h)
	m.outcomeAt.Store(time.Now().UnixNano())
}

// configBody is the one file of a pushed config, as the supervisor hands it to its collector.
func configBody(rc *protobufs.AgentRemoteConfig) string {
	for _, f := range rc.GetConfig().GetConfigMap() {
		return string(f.Body)
	}
	return ""
}

// Mark starts counting reconnections and timing pings afresh: Progress.Reconnected counts the agents
// connected since, Progress.Probes the round trips since.
func (f *Fleet) Mark() {
	for _, m := range f.members {
		m.reconnected.Store(false)
	}
	f.probes.Store(newProbeStats())
}

// SetFail replaces the fail rule for configs that arrive from now on.
func (f *Fleet) SetFail(r FailRule) { f.fail.Store(&r) }

// Stop disconnects every agent.
func (f *Fleet) Stop() {
	select {
	case <-f.stopProbe:
	default:
		close(f.stopProbe)
	}
	f.probeDone.Wait()
	var wg sync.WaitGroup
	for _, m := range f.members {
		if m == nil {
			continue
		}
		if a := m.agent.Load(); a != nil {
			wg.Go(a.Stop)
		}
	}
	wg.Wait()
}

// Progress is how far the agents of one fleet got.
type Progress struct {
	// Agents is how many agents run.
	Agents int `json:"agents"`
	// Connected counts the agents whose last connection attempt succeeded.
	Connected int `json:"connected"`
	// Reconnected counts the agents connected since the last Mark.
	Reconnected int `json:"reconnected"`
	// ConnectFailures counts failed connection attempts.
	ConnectFailures int64 `json:"connectFailures"`
	// LastConnect is when the last of the connected agents connected (Unix nanoseconds).
	LastConnect int64 `json:"lastConnect,omitempty"`
	// Received counts the agents by the hash of the last config they received.
	Received map[string]int `json:"received,omitempty"`
	// Applied counts the agents by the hash they last reported APPLIED.
	Applied map[string]int `json:"applied,omitempty"`
	// Failed counts the agents by the hash they last reported FAILED.
	Failed map[string]int `json:"failed,omitempty"`
	// LastOutcome is, by hash, when the last agent reported its outcome for it (Unix nanoseconds).
	LastOutcome map[string]int64 `json:"lastOutcome,omitempty"`
	// Offered counts the agents by every hash they were ever sent: how many got a config at some time;
	// EverFailed by every hash they ever reported FAILED.
	Offered    map[string]int `json:"offered,omitempty"`
	EverFailed map[string]int `json:"everFailed,omitempty"`
	// Handshakes counts the connections made, reconnections included.
	Handshakes int64 `json:"handshakes,omitempty"`
	// Refusals counts the ServerErrorResponses and the upgrades refused with an HTTP error; Refused the
	// agents by the message of their last one (RefusedAtUpgrade for the latter).
	Refusals int64          `json:"refusals,omitempty"`
	Refused  map[string]int `json:"refused,omitempty"`
	// Probes are the round trips of pings since the last Mark (Options.Probe).
	Probes Probes `json:"probes,omitzero"`
}

// ProbeBuckets are the upper bounds of the round-trip histogram of Probes; the last counts the rest.
var ProbeBuckets = []time.Duration{
	time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond,
	50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second,
}

// Probes are timed pings: how many were sent and answered, the longest round trip, a histogram of them,
// and how long the oldest unanswered ping has been waiting.
type Probes struct {
	Sent     int64 `json:"sent,omitempty"`
	Answered int64 `json:"answered,omitempty"`
	// Max and Waiting are nanoseconds.
	Max     int64 `json:"max,omitempty"`
	Waiting int64 `json:"waiting,omitempty"`
	// Buckets count the round trips up to each of ProbeBuckets, and above the last.
	Buckets []int64 `json:"buckets,omitempty"`
}

// Add merges q into p: counts add up, the longest times stay.
func (p *Probes) Add(q Probes) {
	p.Sent += q.Sent
	p.Answered += q.Answered
	p.Max = max(p.Max, q.Max)
	p.Waiting = max(p.Waiting, q.Waiting)
	if len(p.Buckets) < len(q.Buckets) {
		p.Buckets = append(p.Buckets, make([]int64, len(q.Buckets)-len(p.Buckets))...)
	}
	for i, n := range q.Buckets {
		p.Buckets[i] += n
	}
}

// Quantile is the bucket bound below which a fraction q of the answered round trips fell; the longest
// round trip when that is in the last bucket or shorter than the bound; zero without any.
func (p Probes) Quantile(q float64) time.Duration {
	if p.Answered == 0 {
		return 0
	}
	rank := int64(q * float64(p.Answered))
	var seen int64
	for i, n := range p.Buckets {
		seen += n
		if seen > rank || seen == p.Answered {
			if i < len(ProbeBuckets) {
				return min(ProbeBuckets[i], time.Duration(p.Max))
			}
			break
		}
	}
	return time.Duration(p.Max)
}

// Equal says whether two Probes count the same.
func (p Probes) Equal(q Probes) bool {
	return p.Sent == q.Sent && p.Answered == q.Answered && p.Max == q.Max && p.Waiting == q.Waiting &&
		slices.Equal(p.Buckets, q.Buckets)
}

// probeStats collects Probes without locks.
type probeStats struct {
	sent, answered, max atomic.Int64
	buckets             []atomic.Int64
}

func newProbeStats() *probeStats {
	return &probeStats{buckets: make([]atomic.Int64, len(ProbeBuckets)+1)}
}

func (s *probeStats) add(d time.Duration) {
	s.answered.Add(1)
	for {
		m := s.max.Load()
		if int64(d) <= m || s.max.CompareAndSwap(m, int64(d)) {
			break
		}
	}
	i, _ := slices.BinarySearch(ProbeBuckets, d)
	s.buckets[i].Add(1)
}

func (s *probeStats) snapshot() Probes {
	p := Probes{Sent: s.sent.Load(), Answered: s.answered.Load(), Max: s.max.Load()}
	if p.Sent == 0 {
		return p
	}
	p.Buckets = make([]int64, len(s.buckets))
	for i := range s.buckets {
		p.Buckets[i] = s.buckets[i].Load()
	}
	return p
}

// Progress counts what the agents have done.
func (f *Fleet) Progress() Progress {
	now := time.Now().UnixNano()
	p := Progress{
		Agents: len(f.members), ConnectFailures: f.failures.Load(), Handshakes: f.handshakes.Load(), Refusals: f.refusals.Load(),
		Received: map[string]int{}, Applied: map[string]int{}, Failed: map[string]int{}, LastOutcome: map[string]int64{},
		Offered: map[string]int{}, EverFailed: map[string]int{}, Refused: map[string]int{}, Probes: f.probes.Load().snapshot(),
	}
	for _, m := range f.members {
		if sent := m.pingSent.Load(); sent != 0 {
			p.Probes.Waiting = max(p.Probes.Waiting, now-sent)
		}
		if r := m.refusal.Load(); r != nil {
			p.Refused[*r]++
		}
		m.mu.Lock()
		for _, h := range m.offered {
			p.Offered[h]++
		}
		for _, h := range m.rejected {
			p.EverFailed[h]++
		}
		m.mu.Unlock()
		if m.connected.Load() {
			p.Connected++
			p.LastConnect = max(p.LastConnect, m.connectedAt.Load())
		}
		if m.reconnected.Load() {
			p.Reconnected++
		}
		if h := m.received.Load(); h != nil {
			p.Received[*h]++
		}
		if h := m.outcome.Load(); h != nil {
			if m.failed.Load() {
				p.Failed[*h]++
			} else {
				p.Applied[*h]++
			}
			p.LastOutcome[*h] = max(p.LastOutcome[*h], m.outcomeAt.Load())
		}
	}
	return p
}

// Equal says whether two Progress values count the same.
func (p Progress) Equal(q Progress) bool {
	return p.Agents == q.Agents && p.Connected == q.Connected && p.Reconnected == q.Reconnected &&
		p.ConnectFailures == q.ConnectFailures && p.LastConnect == q.LastConnect &&
		maps.Equal(p.Received, q.Received) && maps.Equal(p.Applied, q.Applied) && maps.Equal(p.Failed, q.Failed) &&
		maps.Equal(p.LastOutcome, q.LastOutcome) && maps.Equal(p.Offered, q.Offered) && maps.Equal(p.EverFailed, q.EverFailed) &&
		p.Handshakes == q.Handshakes && p.Refusals == q.Refusals && maps.Equal(p.Refused, q.Refused) &&
		p.Probes.Equal(q.Probes)
}

// Command is one line on a load generator's stdin.
type Command struct {
	// Cmd is start (connect the agents), mark (see Fleet.Mark), fail (set Fail) or stop.
	Cmd  string   `json:"cmd"`
	Fail FailRule `json:"fail,omitzero"`
}

// Commands of a load generator.
const (
	CmdStart = "start"
	CmdMark  = "mark"
	CmdFail  = "fail"
	CmdStop  = "stop"
)

// Event is one line on a load generator's stdout.
type Event struct {
	// Ready: the options are valid and the process waits for start.
	Ready bool `json:"ready,omitempty"`
	// Progress, whenever it changed, at most every ReportInterval.
	Progress *Progress `json:"progress,omitempty"`
	// Marked acknowledges a mark: Progress lines after it count reconnections since.
	Marked bool `json:"marked,omitempty"`
	// Stopped: every agent is disconnected; the process exits.
	Stopped bool `json:"stopped,omitempty"`
	// Error ends the process.
	Error string `json:"error,omitempty"`
}

// ReportInterval is how often a load generator looks for progress to report. Times in Progress are
// taken when things happen, so this bounds only how late the bench learns about them.
const ReportInterval = 20 * time.Millisecond

// Serve runs a load generator: it writes Ready, waits for start, starts the fleet, reports progress and
// obeys commands until stop or the end of in (its parent is gone), then stops the fleet and writes Stopped.
func Serve(o Options, in io.Reader, out io.Writer) error {
	enc := json.NewEncoder(out)
	var encMu sync.Mutex
	emit := func(e Event) {
		encMu.Lock()
		defer encMu.Unlock()
		_ = enc.Encode(e)
	}
	if err := o.Validate(); err != nil {
		emit(Event{Error: err.Error()})
		return err
	}
	emit(Event{Ready: true})
	cmds := make(chan Command)
	readErr := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			var c Command
			if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
				readErr <- fmt.Errorf("command %q: %w", sc.Text(), err)
				return
			}
			cmds <- c
		}
		readErr <- io.EOF
	}()

	var f *Fleet
	for f == nil {
		select {
		case c := <-cmds:
			if c.Cmd != CmdStart {
				err := fmt.Errorf("command %q before start", c.Cmd)
				emit(Event{Error: err.Error()})
				return err
			}
			var err error
			if f, err = Start(o); err != nil {
				emit(Event{Error: err.Error()})
				return err
			}
		case err := <-readErr:
			return stopped(err)
		}
	}
	defer func() {
		f.Stop()
		emit(Event{Stopped: true})
	}()
	tick := time.NewTicker(ReportInterval)
	defer tick.Stop()
	var last Progress
	for {
		select {
		case <-tick.C:
			if p := f.Progress(); !p.Equal(last) {
				last = p
				emit(Event{Progress: &p})
			}
		case c := <-cmds:
			switch c.Cmd {
			case CmdMark:
				f.Mark()
				// The next report is always sent, so the bench sees counts taken after the mark.
				last = Progress{}
				emit(Event{Marked: true})
			case CmdFail:
				f.SetFail(c.Fail)
			case CmdStop:
				return nil
			default:
				emit(Event{Error: fmt.Sprintf("unknown command %q", c.Cmd)})
			}
		case err := <-readErr:
			return stopped(err)
		}
	}
}

// stopped is nil for the end of stdin, which means stop.
func stopped(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}
