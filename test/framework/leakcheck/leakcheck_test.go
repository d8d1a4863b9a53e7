package leakcheck

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/credential"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
)

func fakeClient(t *testing.T, objs ...client.Object) client.Client {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	return fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).Build()
}

// TestCheckFindsEveryKindOfLeak: the check must be able to fail, for each place and form it promises.
func TestCheckFindsEveryKindOfLeak(t *testing.T) {
	enrollment := credential.New(credential.PrefixEnrollment)
	collector := credential.New(credential.PrefixCollector)
	c := New()
	c.rememberSecret(&corev1.Secret{Data: map[string][]byte{
		v1alpha1.TokenSecretKey: []byte(enrollment), naming.CollectorTokenKey: []byte(collector),
	}})
	if c.Tokens() != 3 {
		t.Fatalf("%d tokens remembered, want the enrollment token, its host's own-metrics token and the collector token", c.Tokens())
	}
	clean := []client.Object{
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "clean"}, Data: map[string]string{"supervisor.yaml": "token: ${env:TOKEN}"}},
		&v1alpha1.EnrollmentToken{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "et"}, Status: v1alpha1.EnrollmentTokenStatus{InstallCommand: "--token <TOKEN>"}},
	}
	r, err := c.Check(context.Background(), fakeClient(t, clean...))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Leaks) != 0 || r.Objects != 2 {
		t.Fatalf("clean objects: %v", r)
	}

	for _, tc := range []struct {
		name string
		obj  client.Object
		want string
	}{
		{"ConfigMap", &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "cm"}, Data: map[string]string{"k": "Bearer " + collector}}, "*v1.ConfigMap a/cm"},
		{"Event note without the prefix", &eventsv1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "ev"}, Note: "token " + strings.TrimPrefix(enrollment, "lme_")}, "*v1.Event a/ev"},
		{"status, base64", &v1alpha1.ManagedCollector{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "mc"},
			Status: v1alpha1.ManagedCollectorStatus{Connected: base64.StdEncoding.EncodeToString([]byte(collector))}}, "*v1alpha1.ManagedCollector a/mc"},
		{"derived own-metrics token", &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "om"}, Data: map[string]string{"k": credential.HostOwnMetricsToken(enrollment)}}, "*v1.ConfigMap a/om"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := c.Check(context.Background(), fakeClient(t, append(clean, tc.obj)...))
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Leaks) != 1 || r.Leaks[0] != tc.want {
				t.Fatalf("leaks %v, want [%s]", r.Leaks, tc.want)
			}
			for _, tok := range []string{enrollment, collector} {
				if strings.Contains(r.String(), tok) || strings.Contains(r.String(), strings.TrimPrefix(tok, "lm")) {
					t.Fatal("the report repeats the token")
				}
			}
		})
	}

	t.Run("log line", func(t *testing.T) {
		_, _ = c.Write([]byte("INFO ok\nERROR presented " + collector + " twice\n"))
		r, err := c.Check(context.Background(), fakeClient(t))
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Leaks) != 1 || r.Leaks[0] != "log line 2: ERROR presented <token> twice" || r.LogLines != 2 {
			t.Fatalf("leaks %v in %d lines", r.Leaks, r.LogLines)
		}
	})
}
