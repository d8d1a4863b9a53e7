// Package index registers the cache field indexes that the reconcilers and the OpAMP server share. Register
// them once per manager, before the manager starts.
package index

import (
	"context"
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
)

// TokenCollector indexes EnrollmentTokens by spec.collectorRef.name.
const TokenCollector = "spec.collectorRef.name"

// Setup registers every index.
func Setup(ctx context.Context, indexer client.FieldIndexer) error {
	if err := indexer.IndexField(ctx, &v1alpha1.EnrollmentToken{}, TokenCollector, func(o client.Object) []string {
		return []string{o.(*v1alpha1.EnrollmentToken).Spec.CollectorRef.Name}
	}); err != nil {
		return fmt.Errorf("indexing EnrollmentTokens by collector: %w", err)
	}
	return nil
}
