package fleet

import (
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/bounded"
)

// Bounds of the API's AgentStatus fields; longer values would make the whole status write fail.
const (
	maxNameLen    = 253
	maxMessageLen = 1024
)

// count covers every agent of the group, also those left out of the bounded list. The config counts are
// about the managed agents: read-only members count in ReadOnly only.
func count(members []*agent, desiredHash string) v1alpha1.AgentCounts {
	var c v1alpha1.AgentCounts
	for _, a := range members {
		if !a.connected {
			continue
		}
		c.Connected++
		if a.healthy() {
			c.Healthy++
		}
		if a.readOnly() {
			c.ReadOnly++
			continue
		}
		if desiredHash == "" || !a.hasConfig || a.config.Hash != desiredHash {
			continue
		}
		switch {
		case a.drifted():
			c.ConfigDrifted++
		case a.config.Status == v1alpha1.ConfigStatusApplied:
			c.ConfigApplied++
		case a.config.Status == v1alpha1.ConfigStatusFailed:
			c.ConfigFailed++
		}
	}
	return c
}

// troubled agents are listed first: a user opening status wants the broken ones.
func troubled(a *agent) bool {
	return a.connected && (a.reportsUnhealthy() || a.drifted() ||
		(!a.readOnly() && a.hasConfig && a.config.Status == v1alpha1.ConfigStatusFailed))
}

// agentList returns at most limit agents: failing and unhealthy first, then the most recently seen, with the
// instance UID as a stable tie-break so an unchanged fleet renders an unchanged list.
func agentList(members []*agent, limit int) []v1alpha1.AgentStatus {
	sort.Slice(members, func(i, j int) bool {
		a, b := members[i], members[j]
		if ta, tb := troubled(a), troubled(b); ta != tb {
			return ta
		}
		if !a.lastSeen.Equal(b.lastSeen) {
			return a.lastSeen.After(b.lastSeen)
		}
		return a.uid < b.uid
	})
	if len(members) > limit {
		members = members[:limit]
	}
	if len(members) == 0 {
		return nil
	}
	out := make([]v1alpha1.AgentStatus, 0, len(members))
	for _, a := range members {
		out = append(out, status(a))
	}
	return out
}

func status(a *agent) v1alpha1.AgentStatus {
	s := v1alpha1.AgentStatus{
		InstanceUID:    a.uid,
		HostName:       bounded.Truncate(a.description.HostName, maxNameLen),
		PodName:        bounded.Truncate(a.description.PodName, maxNameLen),
		NodeName:       bounded.Truncate(a.description.NodeName, maxNameLen),
		ManagementMode: v1alpha1.ManagementModeOpAMP,
		Connected:      a.connected,
		Healthy:        a.healthy(),
		ConfigStatus:   v1alpha1.ConfigStatusUnset,
	}
	if !a.lastSeen.IsZero() {
		t := metav1.NewTime(a.lastSeen)
		s.LastSeen = &t
	}
	if a.hasConfig {
		s.ConfigHash = a.config.Hash
		s.ConfigStatus = a.config.Status
	}
	switch {
	case a.readOnly():
		// What it runs is its own business: the hash shown is that of its effective config.
		s.ConfigStatus = v1alpha1.ConfigStatusReadOnly
		s.ConfigHash = a.effective
		s.Message = readOnlyMessage
		if a.reportsUnhealthy() {
			s.Message = bounded.Truncate(readOnlyMessage+"; "+unhealthyText(a.health), maxMessageLen)
		}
	case a.drifted():
		s.ConfigStatus = v1alpha1.ConfigStatusDrifted
		s.Message = bounded.Truncate(driftText(a.drift.missing), maxMessageLen)
	case a.hasConfig && a.config.Status == v1alpha1.ConfigStatusFailed:
		s.Message = bounded.Truncate(a.config.Message, maxMessageLen)
	case a.reportsUnhealthy():
		s.Message = bounded.Truncate(unhealthyText(a.health), maxMessageLen)
	}
	return s
}

// readOnlyMessage explains a read-only member in status.agents.
const readOnlyMessage = "read-only member: does not accept remote config, runs its own"

func unhealthyText(h *Health) string {
	if msg := healthText(h); msg != "" {
		return msg
	}
	return "reported unhealthy"
}

// healthText summarizes an unhealthy report: the agent's error and the components that are down; empty
// when the report says neither.
func healthText(h *Health) string {
	var parts []string
	if h.LastError != "" {
		parts = append(parts, h.LastError)
	} else if h.Status != "" {
		parts = append(parts, h.Status)
	}
	if len(h.UnhealthyComponents) > 0 {
		parts = append(parts, "unhealthy components: "+strings.Join(h.UnhealthyComponents, ", "))
	}
	return strings.Join(parts, "; ")
}

// Counts are the agent counts of every ManagedCollector this replica knows, against its desired config.
func (r *Registry) Counts() map[types.NamespacedName]v1alpha1.AgentCounts {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[types.NamespacedName]v1alpha1.AgentCounts, len(r.groups))
	for key, g := range r.groups {
		members := make([]*agent, 0, len(g.members))
		for _, a := range g.members {
			members = append(members, a)
		}
		desiredHash := ""
		if g.desired != nil {
			desiredHash = g.desired.Hash
		}
		out[key] = count(members, desiredHash)
	}
	return out
}
