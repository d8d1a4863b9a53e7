// Package ownership tells the operator's own objects from somebody else's of the same name. The operator
// only ever takes over an object it created: one whose controller reference is the owner asking.
package ownership

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Secret returns the Secret key if owner controls it, an empty Secret if there is none, and an error if
// somebody else's Secret has the name. cached holds only the operator's labelled Secrets, so a foreign one
// is looked for with uncached.
func Secret(ctx context.Context, cached, uncached client.Reader, key types.NamespacedName, owner metav1.Object) (*corev1.Secret, error) {
	secret := &corev1.Secret{}
	err := cached.Get(ctx, key, secret)
	if apierrors.IsNotFound(err) {
		err = uncached.Get(ctx, key, secret)
		if apierrors.IsNotFound(err) {
			return &corev1.Secret{}, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("reading Secret %s: %w", key.Name, err)
	}
	if !metav1.IsControlledBy(secret, owner) {
		return nil, fmt.Errorf("secret %s exists and is not owned by this resource: delete or rename it", key)
	}
	return secret, nil
}
