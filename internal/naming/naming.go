// Package naming holds the names and labels of the objects the operator owns, so that builders,
// reconcilers and the OpAMP server agree on them.
package naming

import "github.com/linkmesh/linkmesh-operator/api/v1alpha1"

// FieldOwner is the server-side apply field manager of everything the operator applies, and the value of
// LabelManagedBy on what it owns.
const FieldOwner = "linkmesh-operator"

// RedeemFieldOwner is the field manager of an EnrollmentToken redeem: status.phase (Redeemed),
// status.redeemedBy and status.redeemedAt. The EnrollmentToken reconciler owns every other status field.
const RedeemFieldOwner = "linkmesh-operator-redeem"

// Label keys set on every owned object.
const (
	LabelName      = "app.kubernetes.io/name"
	LabelInstance  = "app.kubernetes.io/instance"
	LabelComponent = "app.kubernetes.io/component"
	LabelManagedBy = "app.kubernetes.io/managed-by"
	LabelPartOf    = "app.kubernetes.io/part-of"
	// LabelCollector names the ManagedCollector an object belongs to.
	LabelCollector = v1alpha1.GroupName + "/managed-collector"
	// LabelEnrollmentToken names the EnrollmentToken a Secret belongs to.
	LabelEnrollmentToken = v1alpha1.GroupName + "/enrollment-token"
)

// AnnotationSupervisorConfigHash on the pod template carries the sha256 of the rendered supervisor.yaml, so
// a change to it rolls the DaemonSet.
const AnnotationSupervisorConfigHash = v1alpha1.GroupName + "/supervisor-config-hash"

// Keys of the collector credentials Secret.
const (
	// CollectorTokenKey holds the bearer token every pod of the ManagedCollector presents to /v1/opamp.
	CollectorTokenKey = "collector-token"
	// OwnMetricsTokenKey holds the bearer token the pods present to /v1/metrics.
	OwnMetricsTokenKey = "own-metrics-token"
)

// SupervisorConfigKey is the key of supervisor.yaml in the supervisor ConfigMap.
const SupervisorConfigKey = "supervisor.yaml"

// CollectorConfigKey names the accepted collector config twice: its key in the supervisor ConfigMap, where
// the operator persists the last accepted spec.config byte for byte, and the one file of the RemoteConfig
// pushed to collectors.
const CollectorConfigKey = "collector.yaml"

// CredentialsSecret is the name of a ManagedCollector's credentials Secret.
func CredentialsSecret(collector string) string { return collector + "-collector-credentials" }

// SupervisorConfigMap is the name of a ManagedCollector's supervisor ConfigMap.
func SupervisorConfigMap(collector string) string { return collector + "-supervisor" }

// DaemonSet is the name of a ManagedCollector's DaemonSet.
func DaemonSet(collector string) string { return collector + "-collector" }

// TokenSecret is the name of an EnrollmentToken's Secret.
func TokenSecret(token string) string { return token + "-enrollment-token" }

// CollectorLabels are the labels of every object a ManagedCollector owns; they also select its pods.
func CollectorLabels(collector string) map[string]string {
	return map[string]string{
		LabelName:      "linkmesh-collector",
		LabelInstance:  collector,
		LabelComponent: "collector",
		LabelManagedBy: FieldOwner,
		LabelPartOf:    "linkmesh",
		LabelCollector: collector,
	}
}

// SelectorLabels select a ManagedCollector's pods. They never change, as a DaemonSet's selector is immutable.
func SelectorLabels(collector string) map[string]string {
	return map[string]string{
		LabelName:      "linkmesh-collector",
		LabelCollector: collector,
	}
}

// TokenLabels are the labels of an EnrollmentToken's Secret.
func TokenLabels(token, collector string) map[string]string {
	return map[string]string{
		LabelName:            "linkmesh-enrollment-token",
		LabelInstance:        token,
		LabelComponent:       "enrollment-token",
		LabelManagedBy:       FieldOwner,
		LabelPartOf:          "linkmesh",
		LabelEnrollmentToken: token,
		LabelCollector:       collector,
	}
}
