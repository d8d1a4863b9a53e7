package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CollectorShare is one operator replica's share of one ManagedCollector's collectors: those connected to
// that replica. Each replica that is not the leader writes its own, at most once a second and only when it
// changed; the leader merges them, with the collectors connected to it, into the ManagedCollector's status.
// A share whose replica's Lease has expired is dropped. Read the ManagedCollector; shares are the operator's
// bookkeeping, owned by the ManagedCollector and removed with it.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=cshare,categories=linkmesh
// +kubebuilder:printcolumn:name="Collector",type=string,JSONPath=`.collector`
// +kubebuilder:printcolumn:name="Replica",type=string,JSONPath=`.replica`
// +kubebuilder:printcolumn:name="Connected",type=integer,JSONPath=`.counts.connected`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type CollectorShare struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// collector is the ManagedCollector, in the same namespace.
	// +kubebuilder:validation:MaxLength=63
	Collector string `json:"collector"`
	// replica is the operator replica that holds these collectors, as its Lease names it.
	// +kubebuilder:validation:MaxLength=253
	Replica string `json:"replica"`
	// countedHash is the config hash the counts are against: the accepted config as this replica last saw it.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	CountedHash string `json:"countedHash,omitempty"`
	// counts of the collectors connected to this replica.
	// +optional
	Counts AgentCounts `json:"counts,omitempty"`
	// agents lists up to 50 of them, failing and unhealthy first.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=50
	Agents []AgentStatus `json:"agents,omitempty"`
	// throughput of these collectors.
	// +optional
	Throughput *ThroughputStatus `json:"throughput,omitempty"`
	// rollout is what these collectors did with the revision being rolled out.
	// +optional
	Rollout *ShareRollout `json:"rollout,omitempty"`
}

// CollectorShareList is a list of CollectorShares.
//
// +kubebuilder:object:root=true
type CollectorShareList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []CollectorShare `json:"items"`
}
