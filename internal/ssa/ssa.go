// Package ssa applies typed objects with server-side apply under the operator's field owner.
package ssa

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/linkmesh/linkmesh-operator/internal/naming"
)

// Apply sends obj as a server-side apply patch owned by naming.FieldOwner, forcing ownership of its fields.
//
// obj comes from a builder and must carry apiVersion and kind. Its status and zero creationTimestamps are
// dropped first: a typed struct serializes them, and applying them would claim fields the operator does
// not manage.
func Apply(ctx context.Context, c client.Client, obj client.Object) error {
	_, err := ApplyObject(ctx, c, obj)
	return err
}

// ApplyObject is Apply that returns the object as the API server has it after the apply.
func ApplyObject(ctx context.Context, c client.Client, obj client.Object) (*unstructured.Unstructured, error) {
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, fmt.Errorf("converting %T to unstructured: %w", obj, err)
	}
	delete(u, "status")
	pruneNullTimestamps(u)
	applyObj := &unstructured.Unstructured{Object: u}
	kind, ns, name := applyObj.GetKind(), applyObj.GetNamespace(), applyObj.GetName()
	if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(applyObj),
		client.FieldOwner(naming.FieldOwner), client.ForceOwnership); err != nil {
		return nil, fmt.Errorf("applying %s %s/%s: %w", kind, ns, name, err)
	}
	return applyObj, nil
}

// pruneNullTimestamps removes creationTimestamp: null from every metadata, including pod templates.
func pruneNullTimestamps(m map[string]any) {
	for k, v := range m {
		switch val := v.(type) {
		case map[string]any:
			if k == "metadata" {
				if ts, ok := val["creationTimestamp"]; ok && ts == nil {
					delete(val, "creationTimestamp")
				}
			}
			pruneNullTimestamps(val)
		case []any:
			for _, item := range val {
				if im, ok := item.(map[string]any); ok {
					pruneNullTimestamps(im)
				}
			}
		}
	}
}

// ApplyStatus sends obj's status as a server-side apply patch of the status subresource, owned by owner:
// obj carries only the status fields owner manages, and a resourceVersion when the apply must fail with a
// conflict if the object changed since it was read. It forces ownership only when asked to (force).
func ApplyStatus(ctx context.Context, c client.Client, obj client.Object, owner string, force bool) error {
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return fmt.Errorf("converting %T to unstructured: %w", obj, err)
	}
	delete(u, "spec")
	pruneNullTimestamps(u)
	applyObj := &unstructured.Unstructured{Object: u}
	opts := []client.SubResourceApplyOption{client.FieldOwner(owner)}
	if force {
		opts = append(opts, client.ForceOwnership)
	}
	if err := c.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(applyObj), opts...); err != nil {
		return fmt.Errorf("applying the status of %s %s/%s: %w", applyObj.GetKind(), applyObj.GetNamespace(), applyObj.GetName(), err)
	}
	return nil
}
