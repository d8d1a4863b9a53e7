// Package v1alpha1 contains the v1alpha1 API of the collectors.linkmesh.io group:
// ManagedCollector and EnrollmentToken.
//
// It imports no controller-runtime packages so that it can become its own module.
//
// +kubebuilder:object:generate=true
// +groupName=collectors.linkmesh.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupName is the API group of this package.
const GroupName = "collectors.linkmesh.io"

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: GroupName, Version: "v1alpha1"}

	// SchemeBuilder registers this API's types.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds this API's types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(GroupVersion,
		&ManagedCollector{}, &ManagedCollectorList{},
		&EnrollmentToken{}, &EnrollmentTokenList{},
		&CollectorShare{}, &CollectorShareList{},
	)
	metav1.AddToGroupVersion(scheme, GroupVersion)
	return nil
}
