package v1alpha1

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CollectorMode says where a ManagedCollector's collectors run.
// +kubebuilder:validation:Enum=DaemonSet;External
type CollectorMode string

const (
	// ModeDaemonSet runs one supervised collector per node through a DaemonSet; enrolled hosts may join too.
	ModeDaemonSet CollectorMode = "DaemonSet"
	// ModeExternal runs no workload in the cluster: the only members are hosts enrolled with EnrollmentTokens.
	ModeExternal CollectorMode = "External"
)

// ConfigStatus is what a collector last reported about the remote config.
// +kubebuilder:validation:Enum=Applying;Applied;Failed;Drifted;Unset;ReadOnly
type ConfigStatus string

const (
	// ConfigStatusApplying means the supervisor is applying the config.
	ConfigStatusApplying ConfigStatus = "Applying"
	// ConfigStatusApplied means the collector runs the config.
	ConfigStatusApplied ConfigStatus = "Applied"
	// ConfigStatusFailed means the supervisor could not apply the config; message has its error.
	ConfigStatusFailed ConfigStatus = "Failed"
	// ConfigStatusDrifted means the supervisor reports the config applied, but the collector's effective
	// config lacks part of it; message says what. The operator re-applies it.
	ConfigStatusDrifted ConfigStatus = "Drifted"
	// ConfigStatusUnset means the supervisor has reported nothing about a remote config yet.
	ConfigStatusUnset ConfigStatus = "Unset"
	// ConfigStatusReadOnly means the collector does not accept remote config (its AcceptsRemoteConfig
	// capability is off): a read-only member, which reports its health and effective config and runs its own
	// config. It is never sent spec.config and counts in counts.readOnly, not against Ready.
	ConfigStatusReadOnly ConfigStatus = "ReadOnly"
)

// ManagementModeOpAMP is the management mode of every agent: the upstream supervisor over OpAMP.
const ManagementModeOpAMP = "OpAMP"

// ManagedCollectorSpec is the desired state of a ManagedCollector.
type ManagedCollectorSpec struct {
	// config is the collector configuration as YAML. It is pushed to every collector byte for byte, so
	// comments and null values such as `debug:` survive. It must be a map with service.pipelines whose
	// receivers, processors and exporters are all defined; otherwise nothing is pushed or rolled out.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=262144
	Config string `json:"config"`

	// mode is DaemonSet (one collector per node, the default) or External (only enrolled hosts).
	// +optional
	// +kubebuilder:default=DaemonSet
	Mode CollectorMode `json:"mode,omitempty"`

	// supervisor tunes the opampsupervisor that runs each collector.
	// +optional
	Supervisor SupervisorSpec `json:"supervisor,omitempty"`

	// images selects the container images of the DaemonSet's pods.
	// +optional
	Images ImagesSpec `json:"images,omitempty"`

	// imagePullPolicy applies to every image of the pod. Defaults to IfNotPresent.
	// +optional
	// +kubebuilder:validation:Enum=Always;IfNotPresent;Never
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`

	// resources of the supervisor container, which also runs the collector process.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`

	// nodeSelector limits the nodes that run a collector.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// tolerations let the DaemonSet run on tainted nodes, such as control-plane nodes.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`

	// affinity of the pods.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`

	// priorityClassName of the pods; node agents usually want a high one such as system-node-critical.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	PriorityClassName string `json:"priorityClassName,omitempty"`

	// serviceAccountName of the pods. Defaults to the namespace's default ServiceAccount.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ServiceAccountName string `json:"serviceAccountName,omitempty"`

	// env is added to the supervisor container; the collector inherits it, so the config can use ${env:NAME}.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=128
	// +kubebuilder:validation:XValidation:rule="self.all(e, !e.name.startsWith('LINKMESH_'))",message="env names starting with LINKMESH_ are reserved for the operator"
	Env []corev1.EnvVar `json:"env,omitempty"`

	// volumes are added to the pods, for example a hostPath of /var/log for the filelog receiver.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:XValidation:rule="self.all(v, !v.name.startsWith('linkmesh-'))",message="volume names starting with linkmesh- are reserved for the operator"
	Volumes []corev1.Volume `json:"volumes,omitempty"`

	// volumeMounts are added to the supervisor container.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	VolumeMounts []corev1.VolumeMount `json:"volumeMounts,omitempty"`

	// updateStrategy of the DaemonSet. Defaults to RollingUpdate.
	// +optional
	UpdateStrategy appsv1.DaemonSetUpdateStrategy `json:"updateStrategy,omitempty"`

	// hostNetwork runs the pods in the node's network namespace, so receivers listen on the node's ports.
	// +optional
	HostNetwork bool `json:"hostNetwork,omitempty"`

	// rollout says how a new spec.config reaches the collectors: all at once (the default) or
	// progressively, step by step, with automatic rollback.
	// +optional
	Rollout *RolloutSpec `json:"rollout,omitempty"`

	// maxCollectors caps the collectors each operator replica holds for this ManagedCollector: one more is
	// refused (and a TooManyCollectors Warning raised), so one leaked credential cannot exhaust the
	// operator's memory. Defaults to max(2 x expected, expected + 100), expected being the DaemonSet's
	// scheduled pods plus the EnrollmentTokens pending or redeemed.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000
	MaxCollectors *int32 `json:"maxCollectors,omitempty"`
}

// SupervisorSpec tunes the upstream opampsupervisor.
type SupervisorSpec struct {
	// The rule matches the syntax before it calls duration(), so an unparseable string gets the bounds
	// message, not a CEL type conversion error.

	// configApplyTimeout is rendered as agent.config_apply_timeout: how long the supervisor waits for the
	// collector to become healthy after a new config before it reports the config applied or failed.
	// Defaults to 5s, the supervisor's own default. Units h, m, s and ms, for example 30s.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]*)?(h|m|s|ms|us|ns))+$') && duration(self) >= duration('1s') && duration(self) <= duration('10m')",message="configApplyTimeout must be between 1s and 10m, written with the units h, m, s or ms, for example 30s"
	ConfigApplyTimeout *metav1.Duration `json:"configApplyTimeout,omitempty"`

	// nonIdentifyingAttributes are reported by every collector of this group, for example
	// linkmesh.environment: production. Pods add k8s.node.name and k8s.pod.name.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	NonIdentifyingAttributes map[string]string `json:"nonIdentifyingAttributes,omitempty"`

	// ownMetrics offers each collector a destination for its internal metrics, so throughput shows up
	// in status. Defaults to true.
	// +optional
	OwnMetrics *bool `json:"ownMetrics,omitempty"`

	// version is the opampsupervisor version the pods run, for example 0.149.0: supervisor.yaml is rendered
	// with the keys that version accepts, as upstream adds, deprecates and removes them. Leave it empty when
	// the tag of the supervisor image is that version, as the default image's is; set it when the tag is not
	// a version (latest, dev) or names something else.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^v?[0-9]+\.[0-9]+\.[0-9]+$`
	Version string `json:"version,omitempty"`
}

// ImagesSpec selects where the pod gets the supervisor and the collector.
//
// Upstream publishes no image with both binaries. By default the pod runs images.supervisor, which must
// contain /linkmesh-agent-init, /opampsupervisor and the collector at collectorExecutable: images/agent/Dockerfile
// builds it from the upstream releases. Set images.collector to take the collector from any collector image
// instead, mounted read-only as an image volume.
type ImagesSpec struct {
	// supervisor is the image of the pod's only container. It must contain /linkmesh-agent-init and
	// /opampsupervisor, and the collector too unless collector is set.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Supervisor string `json:"supervisor,omitempty"`

	// collector is an image that holds the collector binary, mounted read-only at /opt/otelcol as an image
	// volume (Kubernetes 1.35 or later). Leave it empty when the supervisor image contains the collector.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Collector string `json:"collector,omitempty"`

	// collectorExecutable is the collector's path inside the image that holds it (the collector image when
	// set, the supervisor image otherwise). Defaults to /otelcol-contrib, its path in the upstream image.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^/`
	CollectorExecutable string `json:"collectorExecutable,omitempty"`
}

// AgentCounts counts a ManagedCollector's collectors. The counts cover every agent, also those left out of
// the bounded agent list.
type AgentCounts struct {
	// desired is the number of collectors that should be connected: the DaemonSet's scheduled pods plus
	// hosts that redeemed an EnrollmentToken.
	// +optional
	Desired int32 `json:"desired,omitempty"`
	// connected is the number of collectors with a live OpAMP connection, read-only members included.
	// +optional
	Connected int32 `json:"connected,omitempty"`
	// readOnly is the number of connected collectors that do not accept remote config: read-only members,
	// which report health and effective config but are never sent spec.config. The config counts below are
	// about the other, managed collectors.
	// +optional
	ReadOnly int32 `json:"readOnly,omitempty"`
	// healthy is the number of connected collectors that report themselves healthy.
	// +optional
	Healthy int32 `json:"healthy,omitempty"`
	// configApplied is the number of connected collectors that run the current config.
	// +optional
	ConfigApplied int32 `json:"configApplied,omitempty"`
	// configFailed is the number of connected collectors that failed to apply the current config.
	// +optional
	ConfigFailed int32 `json:"configFailed,omitempty"`
	// configDrifted is the number of connected collectors that report the current config applied while
	// their effective config lacks part of it. They do not count as configApplied.
	// +optional
	ConfigDrifted int32 `json:"configDrifted,omitempty"`
}

// AgentStatus is one collector as the OpAMP server last saw it.
type AgentStatus struct {
	// instanceUID is the supervisor's OpAMP instance UID; it survives restarts through the storage directory.
	// +kubebuilder:validation:MaxLength=64
	InstanceUID string `json:"instanceUID"`
	// hostName the collector reported (host.name).
	// +optional
	// +kubebuilder:validation:MaxLength=253
	HostName string `json:"hostName,omitempty"`
	// podName is the collector's pod in DaemonSet mode.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	PodName string `json:"podName,omitempty"`
	// nodeName is the collector's node in DaemonSet mode.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	NodeName string `json:"nodeName,omitempty"`
	// managementMode is always OpAMP.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	ManagementMode string `json:"managementMode,omitempty"`
	// connected is true while the collector holds an OpAMP connection.
	Connected bool `json:"connected"`
	// lastSeen is when the server last heard from the collector.
	// +optional
	LastSeen *metav1.Time `json:"lastSeen,omitempty"`
	// healthy is what the collector last reported about its health.
	Healthy bool `json:"healthy"`
	// configHash is the hash of the remote config the collector last reported.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	ConfigHash string `json:"configHash,omitempty"`
	// configStatus is what the collector last reported about that config.
	// +optional
	ConfigStatus ConfigStatus `json:"configStatus,omitempty"`
	// message explains a failure or an unhealthy state.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

// MaxAgentsInStatus bounds status.agents: failing and unhealthy first, then the most recently seen.
const MaxAgentsInStatus = 50

// ManagedCollectorStatus is the observed state of a ManagedCollector.
type ManagedCollectorStatus struct {
	// conditions: Ready, ConfigValid, Connected, ConfigApplied, Healthy, and kstatus' Reconciling and
	// Stalled.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the generation of the spec this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// configHash is the sha256 of spec.config's exact bytes, the hash collectors report once they run it.
	// Empty while the config is invalid and nothing was ever accepted.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	ConfigHash string `json:"configHash,omitempty"`

	// counts of the collectors in this group.
	// +optional
	Counts AgentCounts `json:"counts,omitempty"`

	// connected is counts.connected/counts.desired, for kubectl get.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	Connected string `json:"connected,omitempty"`

	// agents lists up to 50 collectors: failing and unhealthy first, then the most recently seen.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=50
	Agents []AgentStatus `json:"agents,omitempty"`

	// throughput is what the collectors moved per second, from the own metrics they push to the operator.
	// Absent while spec.supervisor.ownMetrics is false or no collector has reported twice.
	// +optional
	Throughput *ThroughputStatus `json:"throughput,omitempty"`

	// rollout is the state of the progressive rollout of the accepted config; absent with AllAtOnce.
	// +optional
	Rollout *RolloutStatus `json:"rollout,omitempty"`

	// history lists the last 10 accepted revisions of spec.config, newest first, with their outcome.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=10
	History []RevisionHistory `json:"history,omitempty"`
}

// ManagedCollector is a group of OpenTelemetry collectors that share one config, each run by the upstream
// opampsupervisor: one per node through a DaemonSet, and/or hosts enrolled with EnrollmentTokens.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=mc,categories=linkmesh
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 47",message="metadata.name must be at most 47 characters: it prefixes the names and labels of owned objects"
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.mode`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Connected",type=string,JSONPath=`.status.connected`
// +kubebuilder:printcolumn:name="Applied",type=string,JSONPath=`.status.conditions[?(@.type=="ConfigApplied")].status`
// +kubebuilder:printcolumn:name="Rollout",type=string,JSONPath=`.status.rollout.phase`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Updated",type=integer,JSONPath=`.status.rollout.updated`,priority=1
// +kubebuilder:printcolumn:name="Read-only",type=integer,JSONPath=`.status.counts.readOnly`,priority=1
type ManagedCollector struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state.
	// +required
	Spec ManagedCollectorSpec `json:"spec"`
	// status is the observed state.
	// +optional
	Status ManagedCollectorStatus `json:"status,omitempty"`
}

// ManagedCollectorList is a list of ManagedCollectors.
//
// +kubebuilder:object:root=true
type ManagedCollectorList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ManagedCollector `json:"items"`
}
