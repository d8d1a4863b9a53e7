package chart_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// fieldManager is the server-side apply field manager the tests apply the chart with, as a GitOps tool would.
const fieldManager = "chart-test"

var (
	installOnce sync.Once
	installErr  error
)

// installChart applies the default render to the control plane once per test binary and waits for the CRDs to
// be established; the tests that run the operator need them.
func installChart(t *testing.T) {
	t.Helper()
	installOnce.Do(func() {
		objs := render(t, defaultRender())
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if installErr = createNamespace(ctx, namespace); installErr != nil {
			return
		}
		if installErr = applyAll(ctx, objs); installErr != nil {
			return
		}
		installErr = waitEstablished(ctx, objs)
	})
	if installErr != nil {
		t.Fatalf("installing the chart: %v", installErr)
	}
}

// TestInstall applies the chart with server-side apply: every object is accepted, the CRDs are established,
// and applying the same manifests again changes nothing (no object gets a new resourceVersion).
func TestInstall(t *testing.T) {
	installChart(t)
	ctx := context.Background()
	objs := render(t, defaultRender())

	before := resourceVersions(ctx, t, objs)
	if err := applyAll(ctx, objs); err != nil {
		t.Fatalf("applying the chart a second time: %v", err)
	}
	after := resourceVersions(ctx, t, objs)
	for k, v := range before {
		if after[k] != v {
			t.Errorf("applying the same manifests again changed %s (resourceVersion %s -> %s)", k, v, after[k])
		}
	}
	if len(before) != len(objs) {
		t.Errorf("found %d of the %d applied objects", len(before), len(objs))
	}
}

// TestInstallCIValues dry-runs the renders of ci/*-values.yaml against the API server, so a value set that
// renders an invalid object fails here, not at a user's helm install. Kinds from CRDs that are not installed
// here (ServiceMonitor, Certificate) are checked by helm lint only.
func TestInstallCIValues(t *testing.T) {
	installChart(t)
	ctx := context.Background()
	for _, f := range ciValues(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			objs := render(t, renderOpts{release: release, namespace: namespace, valuesFiles: []string{f}})
			checked := 0
			for _, o := range objs {
				if _, err := env.Client.RESTMapper().RESTMapping(o.GroupVersionKind().GroupKind(), o.GroupVersionKind().Version); apimeta.IsNoMatchError(err) {
					t.Logf("skipping %s: %s is not served by the test control plane", key(o), o.GroupVersionKind())
					continue
				}
				if err := apply(ctx, o, client.DryRunAll); err != nil {
					t.Errorf("%v", err)
				}
				checked++
			}
			if checked == 0 {
				t.Fatal("no object was checked")
			}
		})
	}
}

func createNamespace(ctx context.Context, name string) error {
	err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	return nil
}

// applyAll applies objects in helm's install order (CRDs before anything else), waiting for the CRDs to be
// established before what follows them.
func applyAll(ctx context.Context, objs []*unstructured.Unstructured) error {
	for _, o := range objs {
		if err := apply(ctx, o); err != nil {
			return err
		}
	}
	return nil
}

func apply(ctx context.Context, o *unstructured.Unstructured, opts ...client.ApplyOption) error {
	opts = append(opts, client.FieldOwner(fieldManager), client.ForceOwnership)
	if err := env.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()), opts...); err != nil {
		return fmt.Errorf("applying %s: %w", key(o), err)
	}
	return nil
}

func waitEstablished(ctx context.Context, objs []*unstructured.Unstructured) error {
	for _, o := range objs {
		if o.GetKind() != "CustomResourceDefinition" {
			continue
		}
		err := poll(ctx, func(ctx context.Context) error {
			// Unstructured: the operator's scheme, which the test client uses, does not know apiextensions.
			crd := &unstructured.Unstructured{}
			crd.SetGroupVersionKind(o.GroupVersionKind())
			if err := env.Client.Get(ctx, client.ObjectKey{Name: o.GetName()}, crd); err != nil {
				return err
			}
			conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
			for _, c := range conds {
				if m, ok := c.(map[string]any); ok && m["type"] == "Established" && m["status"] == "True" {
					return nil
				}
			}
			return fmt.Errorf("CRD %s is not established: %v", o.GetName(), conds)
		})
		if err != nil {
			return err
		}
	}
	// The client's RESTMapper learns the new kinds lazily; make sure it knows them before anyone creates one.
	return poll(ctx, func(context.Context) error {
		for _, o := range objs {
			if o.GetKind() != "CustomResourceDefinition" {
				continue
			}
			group, _, _ := unstructured.NestedString(o.Object, "spec", "group")
			kind, _, _ := unstructured.NestedString(o.Object, "spec", "names", "kind")
			if _, err := env.Client.RESTMapper().RESTMapping(schema.GroupKind{Group: group, Kind: kind}); err != nil {
				return err
			}
		}
		return nil
	})
}

func resourceVersions(ctx context.Context, t *testing.T, objs []*unstructured.Unstructured) map[string]string {
	t.Helper()
	rv := map[string]string{}
	for _, o := range objs {
		cur := &unstructured.Unstructured{}
		cur.SetGroupVersionKind(o.GroupVersionKind())
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(o), cur); err != nil {
			t.Errorf("getting %s: %v", key(o), err)
			continue
		}
		rv[key(o)] = cur.GetResourceVersion()
	}
	return rv
}

// poll calls check until it returns nil or ctx ends, and then returns check's last error. Each call gets its
// own short deadline, so a check made after ctx has ended still reports what it sees rather than ctx's error.
func poll(ctx context.Context, check func(context.Context) error) error {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		err := check(cctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-tick.C:
		}
	}
}
