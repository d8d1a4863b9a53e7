package manifests

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
)

// Names of the volumes the operator adds; spec.volumes may not use the linkmesh- prefix.
const (
	volumeSupervisorConfig = "linkmesh-supervisor-config"
	volumeStorage          = "linkmesh-storage"
	volumeCollector        = "linkmesh-collector"
)

// terminationGracePeriod leaves the supervisor time to stop its collector, which flushes its queues.
const terminationGracePeriod = 60

// DaemonSet runs one supervisor per node. supervisorConfigHash is SupervisorConfigHash of the rendered
// supervisor.yaml; defaultImage is used when spec.images.supervisor is empty.
func DaemonSet(mc *v1alpha1.ManagedCollector, supervisorConfigHash, defaultImage string) *appsv1.DaemonSet {
	spec := &mc.Spec
	image := spec.Images.Supervisor
	if image == "" {
		image = defaultImage
	}
	pullPolicy := spec.ImagePullPolicy
	if pullPolicy == "" {
		pullPolicy = corev1.PullIfNotPresent
	}
	strategy := spec.UpdateStrategy
	if strategy.Type == "" {
		strategy.Type = appsv1.RollingUpdateDaemonSetStrategyType
	}
	dnsPolicy := corev1.DNSClusterFirst
	if spec.HostNetwork {
		dnsPolicy = corev1.DNSClusterFirstWithHostNet
	}

	volumes := []corev1.Volume{
		{
			Name: volumeSupervisorConfig,
			VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: naming.SupervisorConfigMap(mc.Name)},
				Items:                []corev1.KeyToPath{{Key: naming.SupervisorConfigKey, Path: naming.SupervisorConfigKey}},
			}},
		},
		{
			Name: volumeStorage,
			VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
				Path: fmt.Sprintf("%s/%s/%s", HostStorageRoot, mc.Namespace, mc.Name),
				Type: ptr.To(corev1.HostPathDirectoryOrCreate),
			}},
		},
	}
	mounts := []corev1.VolumeMount{
		{Name: volumeSupervisorConfig, MountPath: SupervisorConfigDir, ReadOnly: true},
		{Name: volumeStorage, MountPath: StorageDir},
	}
	if spec.Images.Collector != "" {
		volumes = append(volumes, corev1.Volume{
			Name: volumeCollector,
			VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{
				Reference: spec.Images.Collector, PullPolicy: pullPolicy,
			}},
		})
		mounts = append(mounts, corev1.VolumeMount{Name: volumeCollector, MountPath: CollectorMountDir, ReadOnly: true})
	}
	volumes = append(volumes, spec.Volumes...)
	mounts = append(mounts, spec.VolumeMounts...)

	// The user's env comes first so that ours, appended last, win on a name clash.
	env := append([]corev1.EnvVar{}, spec.Env...)
	env = append(env,
		corev1.EnvVar{Name: EnvCollectorToken, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: naming.CredentialsSecret(mc.Name)},
			Key:                  naming.CollectorTokenKey,
		}}},
		corev1.EnvVar{Name: EnvNodeName, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{
			APIVersion: "v1", FieldPath: "spec.nodeName",
		}}},
		corev1.EnvVar{Name: EnvPodName, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{
			APIVersion: "v1", FieldPath: "metadata.name",
		}}},
	)

	labels := naming.CollectorLabels(mc.Name)
	return &appsv1.DaemonSet{
		TypeMeta: typeMeta(appsv1.SchemeGroupVersion.WithKind("DaemonSet")),
		ObjectMeta: metav1.ObjectMeta{
			Name:            naming.DaemonSet(mc.Name),
			Namespace:       mc.Namespace,
			Labels:          labels,
			OwnerReferences: ownerRefs(mc),
		},
		Spec: appsv1.DaemonSetSpec{
			Selector:       &metav1.LabelSelector{MatchLabels: naming.SelectorLabels(mc.Name)},
			UpdateStrategy: strategy,
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      labels,
					Annotations: map[string]string{naming.AnnotationSupervisorConfigHash: supervisorConfigHash},
				},
				Spec: corev1.PodSpec{
					OS:                            &corev1.PodOS{Name: corev1.Linux},
					ServiceAccountName:            spec.ServiceAccountName,
					NodeSelector:                  spec.NodeSelector,
					Tolerations:                   spec.Tolerations,
					Affinity:                      spec.Affinity,
					PriorityClassName:             spec.PriorityClassName,
					HostNetwork:                   spec.HostNetwork,
					DNSPolicy:                     dnsPolicy,
					TerminationGracePeriodSeconds: ptr.To[int64](terminationGracePeriod),
					Containers: []corev1.Container{{
						Name:            "supervisor",
						Image:           image,
						ImagePullPolicy: pullPolicy,
						Command: []string{
							AgentInitPath, "--",
							SupervisorPath, "--config", SupervisorConfigDir + "/" + naming.SupervisorConfigKey,
						},
						Env:          env,
						Resources:    spec.Resources,
						VolumeMounts: mounts,
					}},
					Volumes: volumes,
				},
			},
		},
	}
}
