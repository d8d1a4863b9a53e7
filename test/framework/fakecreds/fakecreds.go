// Package fakecreds gives tests a credential.Authority without a control plane: a controller-runtime fake
// client, indexed as the operator's cache is, holding ManagedCollectors and their credentials Secrets as the
// reconciler writes them. Tests of the servers on the listener (and their fuzz targets) use it where an API
// server would only slow them down.
package fakecreds

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/credential"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
)

// Config is a valid collector config, the desired config of every Collector.
const Config = `receivers:
  otlp:
    protocols:
      grpc:
exporters:
  debug:
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
`

// Collector is a ManagedCollector in External mode with its credentials.
type Collector struct {
	// Key names the ManagedCollector.
	Key types.NamespacedName
	// Token is the collector token pods present to /v1/opamp.
	Token string
	// OwnMetricsToken is the token pods present to /v1/metrics.
	OwnMetricsToken string
	objects         []client.Object
}

// NewCollector mints the tokens of ManagedCollector ns/name.
func NewCollector(ns, name string) *Collector {
	c := &Collector{
		Key:             types.NamespacedName{Namespace: ns, Name: name},
		Token:           credential.New(credential.PrefixCollector),
		OwnMetricsToken: credential.New(credential.PrefixOwnMetrics),
	}
	mc := &v1alpha1.ManagedCollector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + ns + "-" + name)},
		Spec:       v1alpha1.ManagedCollectorSpec{Config: Config, Mode: v1alpha1.ModeDaemonSet},
	}
	controller := true
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: naming.CredentialsSecret(name), Labels: naming.CollectorLabels(name),
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: v1alpha1.GroupVersion.String(), Kind: "ManagedCollector", Name: name, UID: mc.UID,
				Controller: &controller,
			}},
		},
		Data: map[string][]byte{
			naming.CollectorTokenKey:  []byte(c.Token),
			naming.OwnMetricsTokenKey: []byte(c.OwnMetricsToken),
		},
	}
	c.objects = []client.Object{mc, sec}
	return c
}

// Client is a fake client holding the collectors' objects, with the index the Authority looks tokens up by.
func Client(collectors ...*Collector) client.Client {
	// Not operator.NewScheme: the servers' own tests import this package, and the operator imports them.
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		panic(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	b := fake.NewClientBuilder().WithScheme(scheme).
		WithIndex(&corev1.Secret{}, credential.IndexTokenDigest, credential.TokenDigests).
		WithIndex(&v1alpha1.EnrollmentToken{}, credential.IndexTokenRedeemer, credential.TokenRedeemers)
	for _, c := range collectors {
		b = b.WithObjects(c.objects...)
	}
	return b.Build()
}

// Authority is a credential.Authority over Client(collectors...), on the real clock.
func Authority(collectors ...*Collector) (*credential.Authority, client.Client) {
	c := Client(collectors...)
	return credential.NewAuthority(c, nil), c
}
