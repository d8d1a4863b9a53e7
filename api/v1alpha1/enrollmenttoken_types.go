package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TokenPhase is the lifecycle phase of an EnrollmentToken.
// +kubebuilder:validation:Enum=Pending;Redeemed;Expired;Revoked
type TokenPhase string

const (
	// TokenPending waits for its first host until status.expiresAt.
	TokenPending TokenPhase = "Pending"
	// TokenRedeemed was used by a host; it keeps working for that host's instance UID only.
	TokenRedeemed TokenPhase = "Redeemed"
	// TokenExpired was not redeemed in time. It never works again: mint a new EnrollmentToken.
	TokenExpired TokenPhase = "Expired"
	// TokenRevoked was revoked with spec.revoked. It never works again, also not for its host.
	TokenRevoked TokenPhase = "Revoked"
)

// TokenSecretKey is the key of the token in the Secret named by status.secretName.
const TokenSecretKey = "token"

// DefaultTokenTTL is the lifetime of an EnrollmentToken without spec.ttl.
const DefaultTokenTTL = "15m"

// CollectorReference names a ManagedCollector in the same namespace.
type CollectorReference struct {
	// name of the ManagedCollector the host joins: at most 47 characters, as a ManagedCollector's name.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=47
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	Name string `json:"name"`
}

// EnrollmentTokenSpec is the desired state of an EnrollmentToken.
// +kubebuilder:validation:XValidation:rule="has(self.ttl) == has(oldSelf.ttl) && (!has(self.ttl) || self.ttl == oldSelf.ttl)",message="ttl is immutable: create a new EnrollmentToken"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.revoked) || !oldSelf.revoked || (has(self.revoked) && self.revoked)",message="a revoked token cannot be reinstated: create a new EnrollmentToken"
type EnrollmentTokenSpec struct {
	// collectorRef names the ManagedCollector, in the same namespace, that the host joins.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="collectorRef is immutable"
	CollectorRef CollectorReference `json:"collectorRef"`

	// The rule matches the syntax before it calls duration(): CEL's && is false when either side is, so a
	// string duration() cannot parse ("31d") gets the bounds message instead of a type conversion error.

	// ttl is how long the token can be redeemed after its creation, from 1m to 30d (720h), in the units h, m
	// and s (for example 24h or 90m; there is no d). Defaults to 15m. A redeemed token does not expire: its
	// host keeps using it on every restart.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]*)?(h|m|s|ms|us|ns))+$') && duration(self) >= duration('1m') && duration(self) <= duration('720h')",message="ttl must be between 1m and 720h (30d), written with the units h, m or s, for example 24h or 90m"
	TTL *metav1.Duration `json:"ttl,omitempty"`

	// description says what the token is for, for example the host it was minted for.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Description string `json:"description,omitempty"`

	// revoked, once true, ends the token for good: its host is disconnected and refused from then on.
	// +optional
	Revoked bool `json:"revoked,omitempty"`
}

// RedeemedBy identifies the host that redeemed a token.
type RedeemedBy struct {
	// instanceUID is the OpAMP instance UID of the host's supervisor.
	// +kubebuilder:validation:MaxLength=64
	InstanceUID string `json:"instanceUID"`
	// hostName the host reported, when it did.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	HostName string `json:"hostName,omitempty"`
}

// EnrollmentTokenStatus is the observed state of an EnrollmentToken.
//
// Two writers share it, each under its own server-side apply field manager and the object's
// resourceVersion as a precondition: the OpAMP server's redeem (linkmesh-operator-redeem) writes
// redeemedBy, redeemedAt and the Pending -> Redeemed transition of phase; the EnrollmentToken reconciler
// (linkmesh-operator) writes every other field and transition.
type EnrollmentTokenStatus struct {
	// phase is Pending, Redeemed, Expired or Revoked.
	// +optional
	Phase TokenPhase `json:"phase,omitempty"`

	// secretName is the Secret, owned by this token, that holds the token under the key "token".
	// +optional
	// +kubebuilder:validation:MaxLength=253
	SecretName string `json:"secretName,omitempty"`

	// expiresAt is when a pending token stops being accepted: creation time plus spec.ttl.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// redeemedBy is the host that redeemed the token.
	// +optional
	RedeemedBy *RedeemedBy `json:"redeemedBy,omitempty"`

	// redeemedAt is when the token was redeemed.
	// +optional
	RedeemedAt *metav1.Time `json:"redeemedAt,omitempty"`

	// installCommand is how to use the token on a host: the operator's one-line install command, with <TOKEN>
	// where the token from the Secret goes. Set while the token can be used.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	InstallCommand string `json:"installCommand,omitempty"`

	// observedGeneration is the generation of the spec this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Usable.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// The deadline is printed as a time, not as a date column: kubectl shows a date as the time since, which a
// future deadline has not got ("<invalid>"), and a countdown would need a status write every second.
// "Redeem By" stays true in every phase.

// EnrollmentToken is a single-use, expiring credential that lets one host outside the cluster join a
// ManagedCollector. The operator generates the token into a Secret the EnrollmentToken owns; the token never
// appears in the resource itself.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=et,categories=linkmesh
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 63",message="metadata.name must be at most 63 characters: it is the value of a label on the token's Secret"
// +kubebuilder:printcolumn:name="Collector",type=string,JSONPath=`.spec.collectorRef.name`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Redeem By",type=string,JSONPath=`.status.expiresAt`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Host",type=string,JSONPath=`.status.redeemedBy.hostName`,priority=1
type EnrollmentToken struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state.
	// +required
	Spec EnrollmentTokenSpec `json:"spec"`
	// status is the observed state.
	// +optional
	Status EnrollmentTokenStatus `json:"status,omitempty"`
}

// EnrollmentTokenList is a list of EnrollmentTokens.
//
// +kubebuilder:object:root=true
type EnrollmentTokenList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []EnrollmentToken `json:"items"`
}
