package manifests

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/collectorconfig"
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

// SupervisorConfigMap holds the pods' supervisor.yaml and the accepted collector config, with, during a
// progressive rollout, the stable config and the rollout's state: what every replica pushes.
func SupervisorConfigMap(mc *v1alpha1.ManagedCollector, supervisorYAML []byte, accepted Accepted) (*corev1.ConfigMap, error) {
	data := map[string]string{
		naming.SupervisorConfigKey: string(supervisorYAML),
		naming.CollectorConfigKey:  accepted.Config,
	}
	if ro := accepted.Rollout; ro != nil {
		state, err := json.Marshal(rolloutState{
			Revision:    collectorconfig.Hash(accepted.Config),
			Phase:       ro.Phase,
			Threshold:   fmt.Sprintf("%016x", ro.Threshold),
			StepStarted: metav1.NewTime(ro.StepStarted),
			Superseded:  ro.Superseded,
		})
		if err != nil {
			return nil, fmt.Errorf("encoding the rollout state: %w", err)
		}
		data[StableConfigKey] = ro.Stable
		data[RolloutStateKey] = string(state)
	}
	return &corev1.ConfigMap{
		TypeMeta: typeMeta(corev1.SchemeGroupVersion.WithKind("ConfigMap")),
		ObjectMeta: metav1.ObjectMeta{
			Name:            naming.SupervisorConfigMap(mc.Name),
			Namespace:       mc.Namespace,
			Labels:          naming.CollectorLabels(mc.Name),
			OwnerReferences: ownerRefs(mc),
		},
		Data: data,
	}, nil
}

// Keys of the supervisor ConfigMap beside supervisor.yaml and collector.yaml, present during a progressive
// rollout.
const (
	// StableConfigKey holds the stable config, byte for byte.
	StableConfigKey = "stable.yaml"
	// RolloutStateKey holds the rollout's state as JSON.
	RolloutStateKey = "rollout.json"
)

// Accepted is the one definition of a ManagedCollector's accepted config: what the supervisor ConfigMap
// persists and every replica pushes, from the same API state, so a restart or a failover continues where
// it was. The leader writes it (SupervisorConfigMap); every replica reads it (AcceptedConfig).
type Accepted struct {
	// Config is the last spec.config that passed validation, byte for byte.
	Config string
	// Rollout is set while a progressive rollout of Config has not completed.
	Rollout *AcceptedRollout
}

// AcceptedRollout is the part of a progressive rollout that decides which collector runs what.
type AcceptedRollout struct {
	// Stable is the config collectors outside the rollout's steps run.
	Stable string
	// Phase is the rollout's phase.
	Phase v1alpha1.RolloutPhase
	// Threshold: collectors ranked below it are in the rollout's steps.
	Threshold uint64
	// StepStarted is when the current step began; collectors that join later run Stable.
	StepStarted time.Time
	// Superseded are the hashes of revisions whose rollouts Config replaced.
	Superseded []string
}

// rolloutState is RolloutStateKey's JSON.
type rolloutState struct {
	Revision    string                `json:"revision"`
	Phase       v1alpha1.RolloutPhase `json:"phase"`
	Threshold   string                `json:"threshold"`
	StepStarted metav1.Time           `json:"stepStartedAt"`
	Superseded  []string              `json:"superseded,omitempty"`
}

// AcceptedConfig reads what SupervisorConfigMap wrote; false when the ConfigMap holds no accepted config.
// A rollout state that does not belong to the accepted config (its revision differs) is an error: the
// ConfigMap is written in one piece, so it was edited by hand.
func AcceptedConfig(cm *corev1.ConfigMap) (Accepted, bool, error) {
	config, ok := cm.Data[naming.CollectorConfigKey]
	if !ok {
		return Accepted{}, false, nil
	}
	out := Accepted{Config: config}
	raw, ok := cm.Data[RolloutStateKey]
	if !ok {
		return out, true, nil
	}
	var st rolloutState
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		return Accepted{}, false, fmt.Errorf("%s of ConfigMap %s: %w", RolloutStateKey, cm.Name, err)
	}
	if st.Revision != collectorconfig.Hash(config) {
		return Accepted{}, false, fmt.Errorf("%s of ConfigMap %s is about revision %s, not the accepted config", RolloutStateKey, cm.Name, st.Revision)
	}
	threshold, err := strconv.ParseUint(st.Threshold, 16, 64)
	if err != nil {
		return Accepted{}, false, fmt.Errorf("%s of ConfigMap %s: threshold: %w", RolloutStateKey, cm.Name, err)
	}
	out.Rollout = &AcceptedRollout{
		Stable:      cm.Data[StableConfigKey],
		Phase:       st.Phase,
		Threshold:   threshold,
		StepStarted: st.StepStarted.UTC(),
		Superseded:  st.Superseded,
	}
	return out, true, nil
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
