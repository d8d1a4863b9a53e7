// Package manifests builds the objects the operator owns from the custom resources: pure functions, data in
// and objects out, with no client, logger or recorder, so each can be golden-tested.
package manifests

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
)

// Defaults that apply where the ManagedCollector leaves a field empty. They live in code, not in the CRD, so
// that upgrading the operator moves collectors to the images it was tested with.
const (
	// DefaultSupervisorImage is built by images/agent/Dockerfile from the upstream supervisor and collector
	// releases, plus /linkmesh-agent-init.
	DefaultSupervisorImage = "ghcr.io/linkmesh/otelcol-agent:" + DefaultPodSupervisorVersion
	// DefaultCollectorExecutable is the collector's path in the upstream otelcol-contrib image.
	DefaultCollectorExecutable = "/otelcol-contrib"
	// DefaultConfigApplyTimeout is the supervisor's own default.
	DefaultConfigApplyTimeout = 5 * time.Second
)

// Paths inside the pod.
const (
	// AgentInitPath forwards SIGTERM to the supervisor as SIGINT, the only signal on which it stops its
	// collector gracefully. Kubernetes cannot send SIGINT itself while ContainerStopSignals is alpha.
	AgentInitPath = "/linkmesh-agent-init"
	// SupervisorPath is the supervisor binary in the supervisor image.
	SupervisorPath = "/opampsupervisor"
	// SupervisorConfigDir is where the supervisor ConfigMap is mounted.
	SupervisorConfigDir = "/etc/otelcol-supervisor"
	// StorageDir is the supervisor's storage directory, a hostPath per node so that the instance UID
	// survives pod restarts.
	StorageDir = "/var/lib/otelcol-supervisor"
	// CollectorMountDir is where images.collector is mounted as an image volume.
	CollectorMountDir = "/opt/otelcol"
	// HostStorageRoot is the node directory under which every ManagedCollector gets its storage directory.
	HostStorageRoot = "/var/lib/linkmesh"
)

// Environment variables set in the supervisor container.
const (
	EnvCollectorToken = "LINKMESH_COLLECTOR_TOKEN"
	EnvNodeName       = "K8S_NODE_NAME"
	EnvPodName        = "K8S_POD_NAME"
)

var collectorGVK = v1alpha1.GroupVersion.WithKind("ManagedCollector")

func ownerRefs(mc *v1alpha1.ManagedCollector) []metav1.OwnerReference {
	return []metav1.OwnerReference{*metav1.NewControllerRef(mc, collectorGVK)}
}

func typeMeta(gvk schema.GroupVersionKind) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: gvk.GroupVersion().String(), Kind: gvk.Kind}
}

// ConfigApplyTimeout is the ManagedCollector's timeout or the default.
func ConfigApplyTimeout(mc *v1alpha1.ManagedCollector) time.Duration {
	if t := mc.Spec.Supervisor.ConfigApplyTimeout; t != nil {
		return t.Duration
	}
	return DefaultConfigApplyTimeout
}

// OwnMetricsEnabled is spec.supervisor.ownMetrics, true unless set to false.
func OwnMetricsEnabled(mc *v1alpha1.ManagedCollector) bool {
	return mc.Spec.Supervisor.OwnMetrics == nil || *mc.Spec.Supervisor.OwnMetrics
}

// MaxCollectors is spec.maxCollectors or max(2 x expected, expected + 100), expected being the collectors
// that may connect: the DaemonSet's scheduled pods and the hosts whose EnrollmentTokens are pending or
// redeemed. That is room for every pod and host, their restarts and reinstalls, and no more.
func MaxCollectors(mc *v1alpha1.ManagedCollector, expected int) int {
	if m := mc.Spec.MaxCollectors; m != nil {
		return int(*m)
	}
	return max(2*expected, expected+100)
}

// Mode is spec.mode or DaemonSet.
func Mode(mc *v1alpha1.ManagedCollector) v1alpha1.CollectorMode {
	if mc.Spec.Mode == "" {
		return v1alpha1.ModeDaemonSet
	}
	return mc.Spec.Mode
}
