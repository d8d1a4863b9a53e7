//go:build tools

// Package e2e pins the upstream opampsupervisor, built from this module by hack/e2e-binaries.sh.
package e2e

import _ "github.com/open-telemetry/opentelemetry-collector-contrib/cmd/opampsupervisor"
