package manifests

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
)

// CollectorTokens are the bearer tokens of a ManagedCollector's pods.
type CollectorTokens struct {
	// Collector is presented to /v1/opamp.
	Collector string
	// OwnMetrics is presented to /v1/metrics.
	OwnMetrics string
}

// CredentialsSecret holds a ManagedCollector's tokens. The tokens are minted by the caller, so this stays pure.
func CredentialsSecret(mc *v1alpha1.ManagedCollector, tokens CollectorTokens) *corev1.Secret {
	return &corev1.Secret{
		TypeMeta: typeMeta(corev1.SchemeGroupVersion.WithKind("Secret")),
		ObjectMeta: metav1.ObjectMeta{
			Name:            naming.CredentialsSecret(mc.Name),
			Namespace:       mc.Namespace,
			Labels:          naming.CollectorLabels(mc.Name),
			OwnerReferences: ownerRefs(mc),
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{
			naming.CollectorTokenKey:  []byte(tokens.Collector),
			naming.OwnMetricsTokenKey: []byte(tokens.OwnMetrics),
		},
	}
}

var tokenGVK = v1alpha1.GroupVersion.WithKind("EnrollmentToken")

// TokenSecret holds an EnrollmentToken's token under v1alpha1.TokenSecretKey.
func TokenSecret(et *v1alpha1.EnrollmentToken, token string) *corev1.Secret {
	return &corev1.Secret{
		TypeMeta: typeMeta(corev1.SchemeGroupVersion.WithKind("Secret")),
		ObjectMeta: metav1.ObjectMeta{
			Name:            naming.TokenSecret(et.Name),
			Namespace:       et.Namespace,
			Labels:          naming.TokenLabels(et.Name, et.Spec.CollectorRef.Name),
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(et, tokenGVK)},
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{v1alpha1.TokenSecretKey: []byte(token)},
	}
}
