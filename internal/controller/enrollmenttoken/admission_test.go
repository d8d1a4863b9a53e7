package enrollmenttoken_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
)

// TestAPIServerRefusesTokensThatCouldNeverWork: issue 15 found tokens whose name or collectorRef.name is
// too long accepted and then stuck without a word, as their Secret's labels cannot hold the names.
func TestAPIServerRefusesTokensThatCouldNeverWork(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	for _, c := range []struct {
		name    string
		mutate  func(*v1alpha1.EnrollmentToken)
		message string
	}{
		{"name over 63", func(et *v1alpha1.EnrollmentToken) { et.Name = strings.Repeat("a", 64) },
			"metadata.name must be at most 63 characters"},
		{"collectorRef.name over 47", func(et *v1alpha1.EnrollmentToken) { et.Spec.CollectorRef.Name = strings.Repeat("a", 48) },
			"spec.collectorRef.name: Too long: may not be more than 47"},
		{"collectorRef.name no object could have", func(et *v1alpha1.EnrollmentToken) { et.Spec.CollectorRef.Name = "Linux Hosts" },
			"spec.collectorRef.name: Invalid value"},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			et := newToken(ns, "long", 0)
			c.mutate(et)
			err := env.Client.Create(ctx, et)
			g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want Invalid, got %v", err)
			g.Expect(err.Error()).To(ContainSubstring(c.message))
		})
	}

	// The longest names that work are accepted, and work.
	g := NewWithT(t)
	name := strings.Repeat("b", 63)
	et := newToken(ns, name, 0)
	et.Spec.CollectorRef.Name = strings.Repeat("c", 47)
	g.Expect(env.Client.Create(ctx, &v1alpha1.ManagedCollector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: et.Spec.CollectorRef.Name},
		Spec:       v1alpha1.ManagedCollectorSpec{Config: config, Mode: v1alpha1.ModeExternal},
	})).To(Succeed())
	g.Expect(env.Client.Create(ctx, et)).To(Succeed())
	et = waitPhase(t, ns, name, v1alpha1.TokenPending)
	g.Expect(apimeta.IsStatusConditionTrue(et.Status.Conditions, v1alpha1.ConditionUsable)).To(BeTrue())
}

// TestUnparseableTTLGetsTheBoundsMessage: "ttl: 31d" got a CEL "type conversion error"; a user must read
// what is wrong and what is allowed.
func TestUnparseableTTLGetsTheBoundsMessage(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	for _, ttl := range []string{"31d", "1 hour", "0", "-5m", "h", "721h", "59s"} {
		t.Run(ttl, func(t *testing.T) {
			g := NewWithT(t)
			u := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": v1alpha1.GroupVersion.String(), "kind": "EnrollmentToken",
				"metadata": map[string]any{"namespace": ns, "name": "ttl"},
				"spec":     map[string]any{"collectorRef": map[string]any{"name": "hosts"}, "ttl": ttl},
			}}
			err := env.Client.Create(ctx, u)
			g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want Invalid, got %v", err)
			g.Expect(err.Error()).To(ContainSubstring("ttl must be between 1m and 720h (30d), written with the units h, m or s"))
			g.Expect(err.Error()).NotTo(ContainSubstring("conversion"))
		})
	}
	for _, ttl := range []string{"1m", "90m", "1h30m", "1.5h", "720h", "2592000s"} {
		g := NewWithT(t)
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": v1alpha1.GroupVersion.String(), "kind": "EnrollmentToken",
			"metadata": map[string]any{"namespace": ns, "generateName": "ttl-"},
			"spec":     map[string]any{"collectorRef": map[string]any{"name": "hosts"}, "ttl": ttl},
		}}
		g.Expect(env.Client.Create(ctx, u)).To(Succeed(), "ttl %s", ttl)
	}
}

// TestPendingTokenShowsItsDeadline: kubectl showed "EXPIRES <invalid>" for every pending token, as a date
// column shows the time since, and the deadline is ahead. The table the API server gives kubectl must carry
// the deadline itself.
func TestPendingTokenShowsItsDeadline(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	g.Expect(env.Client.Create(context.Background(), newToken(ns, "web-01", time.Hour))).To(Succeed())
	et := waitPhase(t, ns, "web-01", v1alpha1.TokenPending)

	httpClient, err := rest.HTTPClientFor(env.Config)
	g.Expect(err).NotTo(HaveOccurred())
	req, err := http.NewRequest(http.MethodGet, strings.TrimSuffix(env.Config.Host, "/")+"/apis/"+v1alpha1.GroupVersion.String()+
		"/namespaces/"+ns+"/enrollmenttokens/web-01", nil)
	g.Expect(err).NotTo(HaveOccurred())
	// What kubectl get asks for.
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	resp, err := httpClient.Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK), string(body))
	var table metav1.Table
	g.Expect(json.Unmarshal(body, &table)).To(Succeed())
	g.Expect(table.Rows).To(HaveLen(1))
	cells := map[string]any{}
	for i, col := range table.ColumnDefinitions {
		cells[col.Name] = table.Rows[0].Cells[i]
	}
	g.Expect(cells).To(HaveKeyWithValue("Phase", "Pending"))
	g.Expect(cells).To(HaveKeyWithValue("Redeem By", et.Status.ExpiresAt.UTC().Format(time.RFC3339)))
	for name, cell := range cells {
		g.Expect(cell).NotTo(Equal("<invalid>"), "column %s", name)
	}
}
