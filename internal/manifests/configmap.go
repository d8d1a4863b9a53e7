package manifests

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
)

// PodSupervisorYAML renders the supervisor.yaml of a ManagedCollector's pods, for the supervisor version of
// PodSupervisorVersion. endpoint is the OpAMP URL the pods reach the operator at; defaultImage is the image
// pods run when spec.images.supervisor is empty (the operator's --agent-image).
func PodSupervisorYAML(mc *v1alpha1.ManagedCollector, endpoint, defaultImage string) ([]byte, error) {
	attrs := make(map[string]string, len(mc.Spec.Supervisor.NonIdentifyingAttributes)+2)
	for k, v := range mc.Spec.Supervisor.NonIdentifyingAttributes {
		attrs[k] = v
	}
	// The supervisor expands ${env:...} anywhere in its config; the downward API fills these.
	attrs["k8s.node.name"] = "${env:" + EnvNodeName + "}"
	attrs["k8s.pod.name"] = "${env:" + EnvPodName + "}"
	out, err := SupervisorYAML(SupervisorOptions{
		Endpoint:           endpoint,
		Authorization:      "Bearer ${env:" + EnvCollectorToken + "}",
		Executable:         collectorExecutablePath(mc),
		StorageDirectory:   StorageDir,
		ConfigApplyTimeout: ConfigApplyTimeout(mc),
		Attributes:         attrs,
		OwnMetrics:         OwnMetricsEnabled(mc),
		SupervisorVersion:  PodSupervisorVersion(mc, defaultImage),
	})
	if err != nil {
		return nil, fmt.Errorf("rendering supervisor.yaml: %w", err)
	}
	return out, nil
}

// SupervisorConfigMap holds the pods' supervisor.yaml and the last accepted collector config.
func SupervisorConfigMap(mc *v1alpha1.ManagedCollector, supervisorYAML []byte, acceptedConfig string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		TypeMeta: typeMeta(corev1.SchemeGroupVersion.WithKind("ConfigMap")),
		ObjectMeta: metav1.ObjectMeta{
			Name:            naming.SupervisorConfigMap(mc.Name),
			Namespace:       mc.Namespace,
			Labels:          naming.CollectorLabels(mc.Name),
			OwnerReferences: ownerRefs(mc),
		},
		Data: map[string]string{
			naming.SupervisorConfigKey: string(supervisorYAML),
			ConfigKey:                  acceptedConfig,
		},
	}
}

// SupervisorConfigHash is the pod-template annotation value that rolls the pods when supervisor.yaml changes.
func SupervisorConfigHash(supervisorYAML []byte) string {
	sum := sha256.Sum256(supervisorYAML)
	return hex.EncodeToString(sum[:])
}

func collectorExecutablePath(mc *v1alpha1.ManagedCollector) string {
	exe := mc.Spec.Images.CollectorExecutable
	if exe == "" {
		exe = DefaultCollectorExecutable
	}
	if mc.Spec.Images.Collector != "" {
		return path.Join(CollectorMountDir, exe)
	}
	return exe
}
