// Package index registers every cache field index of the operator, those of the reconcilers and the
// credential authority's. Register them once per manager, before the manager starts.
package index

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/credential"
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
	if err := indexer.IndexField(ctx, &v1alpha1.EnrollmentToken{}, credential.IndexTokenRedeemer, credential.TokenRedeemers); err != nil {
		return fmt.Errorf("indexing EnrollmentTokens by redeemer: %w", err)
	}
	if err := indexer.IndexField(ctx, &corev1.Secret{}, credential.IndexTokenDigest, credential.TokenDigests); err != nil {
		return fmt.Errorf("indexing Secrets by token digest: %w", err)
	}
	return nil
}
