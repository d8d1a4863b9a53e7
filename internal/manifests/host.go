package manifests

import (
	"fmt"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
)

// Paths of the product document's host install (Option B): the installer and the bootstrap config use them.
const (
	// HostCollectorExecutable is where the installer puts otelcol-contrib.
	HostCollectorExecutable = "/usr/local/bin/otelcol-contrib"
	// HostStorageDir is the supervisor's storage directory on a host.
	HostStorageDir = "/var/lib/otelcol-supervisor"
	// EnvironmentAttribute is the non-identifying attribute the installer's --environment sets.
	EnvironmentAttribute = "linkmesh.environment"
)

// HostSupervisorYAML renders the supervisor.yaml of a host enrolled into mc with an EnrollmentToken: the
// product document's file, with the token written in (a host has no Secret to read it from), the
// ManagedCollector's supervisor settings, environment, when not empty, as linkmesh.environment, and the keys
// that supervisorVersion, the release the host runs, accepts.
func HostSupervisorYAML(mc *v1alpha1.ManagedCollector, endpoint, token, environment, supervisorVersion string) ([]byte, error) {
	attrs := make(map[string]string, len(mc.Spec.Supervisor.NonIdentifyingAttributes)+1)
	for k, v := range mc.Spec.Supervisor.NonIdentifyingAttributes {
		attrs[k] = v
	}
	if environment != "" {
		attrs[EnvironmentAttribute] = environment
	}
	out, err := SupervisorYAML(SupervisorOptions{
		Endpoint:           endpoint,
		Authorization:      "Bearer " + token,
		Executable:         HostCollectorExecutable,
		StorageDirectory:   HostStorageDir,
		ConfigApplyTimeout: ConfigApplyTimeout(mc),
		Attributes:         attrs,
		OwnMetrics:         OwnMetricsEnabled(mc),
		SupervisorVersion:  supervisorVersion,
	})
	if err != nil {
		return nil, fmt.Errorf("rendering the host's supervisor.yaml: %w", err)
	}
	return out, nil
}
