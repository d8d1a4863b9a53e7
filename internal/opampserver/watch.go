package opampserver

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
)

// Watch adds to the cache's informers the handlers that close the connections of revoked tokens and
// deleted ManagedCollectors. The handlers only touch memory.
func (s *Server) Watch(ctx context.Context, c cache.Cache) error {
	tokens, err := c.GetInformer(ctx, &v1alpha1.EnrollmentToken{})
	if err != nil {
		return fmt.Errorf("watching EnrollmentTokens: %w", err)
	}
	if _, err := tokens.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, obj any) {
			if et, ok := obj.(*v1alpha1.EnrollmentToken); ok && revoked(et) {
				s.revoke(et)
			}
		},
		DeleteFunc: func(obj any) {
			if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if et, ok := obj.(*v1alpha1.EnrollmentToken); ok {
				s.revoke(et)
			}
		},
	}); err != nil {
		return fmt.Errorf("watching EnrollmentTokens: %w", err)
	}

	collectors, err := c.GetInformer(ctx, &v1alpha1.ManagedCollector{})
	if err != nil {
		return fmt.Errorf("watching ManagedCollectors: %w", err)
	}
	forget := func(obj any) {
		if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if mc, ok := obj.(*v1alpha1.ManagedCollector); ok {
			s.fleet.Forget(types.NamespacedName{Namespace: mc.Namespace, Name: mc.Name})
		}
	}
	if _, err := collectors.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, obj any) {
			if mc, ok := obj.(*v1alpha1.ManagedCollector); ok && mc.DeletionTimestamp != nil {
				forget(obj)
			}
		},
		DeleteFunc: forget,
	}); err != nil {
		return fmt.Errorf("watching ManagedCollectors: %w", err)
	}
	return nil
}

// revoked is a token that must not keep any host connected. Expired is not here: it only ever applies to
// tokens that no host holds.
func revoked(et *v1alpha1.EnrollmentToken) bool {
	return et.DeletionTimestamp != nil || et.Spec.Revoked || et.Status.Phase == v1alpha1.TokenRevoked
}

func (s *Server) revoke(et *v1alpha1.EnrollmentToken) {
	s.fleet.EvictToken(types.NamespacedName{Namespace: et.Namespace, Name: et.Name})
}
