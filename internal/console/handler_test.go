package console

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/index"
)

// recordingReader is a cache that records the kinds it is asked for.
type recordingReader struct {
	client.Reader
	mu    sync.Mutex
	kinds map[string]bool
}

func (r *recordingReader) record(obj any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch obj.(type) {
	case *corev1.Secret, *corev1.SecretList:
		r.kinds["Secret"] = true
	default:
		r.kinds["other"] = true
	}
}

func (r *recordingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	r.record(obj)
	return r.Reader.Get(ctx, key, obj, opts...)
}

func (r *recordingReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	r.record(list)
	return r.Reader.List(ctx, list, opts...)
}

// TestPagesNeverReadSecrets serves every page from a cache that holds the EnrollmentToken's Secret: no page
// reads a Secret, and the token appears nowhere.
func TestPagesNeverReadSecrets(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	mc := sampleCollector()
	mc.ResourceVersion = ""
	const token = "lme_secretsecretsecret"
	et := &v1alpha1.EnrollmentToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: mc.Namespace, Name: "web-01"},
		Spec:       v1alpha1.EnrollmentTokenSpec{CollectorRef: v1alpha1.CollectorReference{Name: mc.Name}},
		Status:     v1alpha1.EnrollmentTokenStatus{Phase: v1alpha1.TokenPending, SecretName: "web-01-enrollment-token", InstallCommand: "curl ... --token <TOKEN>"},
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: mc.Namespace, Name: "web-01-enrollment-token"}, Data: map[string][]byte{"token": []byte(token)}}
	ev := &eventsv1.Event{
		ObjectMeta: metav1.ObjectMeta{Namespace: mc.Namespace, Name: "e1"},
		Regarding:  corev1.ObjectReference{Kind: collectorKind, Name: mc.Name, UID: mc.UID},
		Reason:     v1alpha1.EventRegistered, Type: "Normal", Note: "registered", EventTime: metav1.NewMicroTime(now),
		ReportingController: "linkmesh-operator", ReportingInstance: "x", Action: "Registered",
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(mc, et, secret, ev).
		WithIndex(&v1alpha1.EnrollmentToken{}, index.TokenCollector, func(o client.Object) []string {
			return []string{o.(*v1alpha1.EnrollmentToken).Spec.CollectorRef.Name}
		}).
		WithIndex(&eventsv1.Event{}, EventRegardingName, func(o client.Object) []string {
			return []string{o.(*eventsv1.Event).Regarding.Name}
		}).Build()
	reader := &recordingReader{Reader: c, kinds: map[string]bool{}}
	stopping := make(chan struct{})
	h := &handler{reader: reader, access: newAccess(false, nil, clocktesting.NewFakeClock(now)), broker: newBroker(),
		clock: clocktesting.NewFakeClock(now), log: logr.Discard(), stopping: stopping}
	srv := httptest.NewServer(h.routes())
	defer srv.Close()
	for path, want := range map[string]int{
		"/": 200, "/?namespace=team-a&page=2": 200, "/collectors/team-a/nodes": 200, "/collectors/team-a/nodes/topology": 200,
		"/collectors/team-a/absent": 404, "/static/console.css": 200, "/static/console.js": 200, "/nothing": 404,
	} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", path, resp.StatusCode, want)
		}
		if strings.Contains(string(b), token) {
			t.Errorf("%s shows the token", path)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("%s: Content-Security-Policy %q", path, csp)
		}
		if path == "/collectors/team-a/nodes" && (!strings.Contains(string(b), "registered") || !strings.Contains(string(b), "web-01")) {
			t.Errorf("the ManagedCollector's page lacks its Event or its EnrollmentToken")
		}
	}
	resp, err := http.Post(srv.URL+"/", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405 (the console is read-only)", resp.StatusCode)
	}
	if reader.kinds["Secret"] || !reader.kinds["other"] {
		t.Errorf("kinds read: %v; want no Secret", reader.kinds)
	}
	close(stopping)
}
