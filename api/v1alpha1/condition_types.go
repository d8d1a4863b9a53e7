package v1alpha1

// Condition types of a ManagedCollector.
const (
	// ConditionReady is True when the config is valid, at least one collector is connected, and every
	// connected collector runs the desired config and is healthy.
	ConditionReady = "Ready"
	// ConditionConfigValid is True when spec.config parses and its pipelines reference only defined components.
	ConditionConfigValid = "ConfigValid"
	// ConditionConnected is True when at least one collector holds an OpAMP connection.
	ConditionConnected = "Connected"
	// ConditionConfigApplied is True when every connected collector reports the current config as applied.
	ConditionConfigApplied = "ConfigApplied"
	// ConditionHealthy is True when every connected collector reports itself healthy.
	ConditionHealthy = "Healthy"
	// ConditionReconciling is kstatus' Reconciling: True while the operator works towards the spec, a
	// progressive rollout progresses or status.observedGeneration lags.
	ConditionReconciling = "Reconciling"
	// ConditionStalled is kstatus' Stalled: True when progress needs a person, for example after a rollout
	// halted or rolled back.
	ConditionStalled = "Stalled"
)

// Condition reasons of a ManagedCollector.
const (
	// ReasonConfigValid means spec.config passed validation.
	ReasonConfigValid = "Valid"
	// ReasonConfigInvalid means spec.config failed validation; the message names the problem.
	ReasonConfigInvalid = "ConfigInvalid"
	// ReasonNoAgentsConnected means no collector is connected yet.
	ReasonNoAgentsConnected = "NoAgentsConnected"
	// ReasonAgentsConnected means at least one collector is connected.
	ReasonAgentsConnected = "AgentsConnected"
	// ReasonAgentsMissing means fewer collectors are connected than the DaemonSet and enrolled hosts want.
	ReasonAgentsMissing = "AgentsMissing"
	// ReasonConfigApplying means some connected collectors have not yet reported the current config applied.
	ReasonConfigApplying = "Applying"
	// ReasonConfigApplied means every connected collector runs the current config.
	ReasonConfigApplied = "Applied"
	// ReasonConfigFailed means at least one collector reported the current config as failed.
	ReasonConfigFailed = "ConfigFailed"
	// ReasonConfigDrift means a collector reports the current config applied while the config it runs
	// lacks part of it; the operator re-applies it.
	ReasonConfigDrift = "ConfigDrift"
	// ReasonAllHealthy means every connected collector reports itself healthy.
	ReasonAllHealthy = "AllHealthy"
	// ReasonUnhealthy means at least one connected collector reports itself unhealthy.
	ReasonUnhealthy = "Unhealthy"
	// ReasonReady means the ManagedCollector is ready.
	ReasonReady = "Ready"
	// ReasonApplyFailed means the operator could not apply an owned object to the API server.
	ReasonApplyFailed = "ApplyFailed"
	// ReasonReadOnlyMembers means every connected collector is a read-only member: it reports health and its
	// effective config but does not accept remote config, so spec.config runs on none of them.
	ReasonReadOnlyMembers = "ReadOnlyMembers"
	// ReasonRollingOut means a progressive rollout of spec.config is in progress.
	ReasonRollingOut = "RollingOut"
	// ReasonRolloutPaused means spec.rollout.paused holds a progressive rollout.
	ReasonRolloutPaused = "RolloutPaused"
	// ReasonRolloutHalted means a progressive rollout halted on failures (onFailure: Pause).
	ReasonRolloutHalted = "RolloutHalted"
	// ReasonRolledBack means a progressive rollout failed and the collectors run the stable config again.
	ReasonRolledBack = "RolledBack"
	// ReasonGenerationPending means the operator has not yet acted on the latest spec.
	ReasonGenerationPending = "GenerationPending"
	// ReasonReconciled means the operator has nothing left to do for the current spec.
	ReasonReconciled = "Reconciled"
)

// Condition types of an EnrollmentToken.
const (
	// ConditionUsable is True while the token can enroll a host or keeps its redeemed host enrolled.
	ConditionUsable = "Usable"
)

// Condition reasons of an EnrollmentToken.
const (
	// ReasonPending means the token waits for its first host.
	ReasonPending = "Pending"
	// ReasonRedeemed means a host redeemed the token; only that host may use it.
	ReasonRedeemed = "Redeemed"
	// ReasonExpired means the token was not redeemed before status.expiresAt.
	ReasonExpired = "Expired"
	// ReasonRevoked means spec.revoked was set.
	ReasonRevoked = "Revoked"
	// ReasonCollectorNotFound means spec.collectorRef names no ManagedCollector in the namespace.
	ReasonCollectorNotFound = "CollectorNotFound"
	// ReasonSecretApplyFailed means the operator cannot write the token's Secret; the message has the API
	// server's answer. The operator retries with backoff.
	ReasonSecretApplyFailed = "SecretApplyFailed"
)

// Event reasons, emitted on ManagedCollectors and EnrollmentTokens.
const (
	// EventConfigInvalid is a Warning: spec.config was refused and nothing was changed.
	EventConfigInvalid = "ConfigInvalid"
	// EventApplyFailed is a Warning: an owned object could not be applied.
	EventApplyFailed = "ApplyFailed"
	// EventRegistered is emitted on the first connection of a collector instance.
	EventRegistered = "Registered"
	// EventConfigApplied is emitted when a collector reports the current config applied.
	EventConfigApplied = "ConfigApplied"
	// EventConfigFailed is a Warning carrying the supervisor's error text.
	EventConfigFailed = "ConfigFailed"
	// EventConfigDrift is a Warning: a collector's effective config lacks part of the pushed config, whatever
	// its remote config status says.
	EventConfigDrift = "ConfigDrift"
	// EventConfigHealed is emitted when a drifted collector runs the pushed config again.
	EventConfigHealed = "ConfigHealed"
	// EventDisconnected is emitted when a collector's connection ends or goes idle.
	EventDisconnected = "Disconnected"
	// EventUnhealthy is a Warning: a collector reported itself unhealthy.
	EventUnhealthy = "Unhealthy"
	// EventReconnected is emitted when collectors that ran a config from the operator connect to a replica
	// that did not know them, for example after their replica stopped.
	EventReconnected = "Reconnected"
	// EventReadOnlyMember is emitted when a connected collector stops accepting remote config and becomes a
	// read-only member.
	EventReadOnlyMember = "ReadOnlyMember"
	// EventTooManyCollectors is a Warning: a collector was refused because its ManagedCollector holds as many
	// collectors as it may (spec.maxCollectors).
	EventTooManyCollectors = "TooManyCollectors"
	// EventInstanceUIDTaken is a Warning: a collector presented an instance UID bound to another
	// ManagedCollector or EnrollmentToken and was given a new one.
	EventInstanceUIDTaken = "InstanceUIDTaken"
	// Rollout events, once per transition, with the revision and the step in the message.
	EventRolloutStarted       = "RolloutStarted"
	EventRolloutStepCompleted = "RolloutStepCompleted"
	EventRolloutPaused        = "RolloutPaused"
	EventRolloutHalted        = "RolloutHalted"
	EventRolledBack           = "RolledBack"
	EventRolloutCompleted     = "RolloutCompleted"
	// EventTokenExpired is emitted when a pending EnrollmentToken expires.
	EventTokenExpired = "Expired"
	// EventTokenRedeemed is emitted when a host redeems an EnrollmentToken.
	EventTokenRedeemed = "Redeemed"
	// EventTokenRevoked is emitted when an EnrollmentToken is revoked.
	EventTokenRevoked = "Revoked"
)
