// Package supervisoryaml reads a rendered supervisor.yaml back into the fields the upstream opampsupervisor
// reads, so that tests check what the supervisor will see rather than match strings. It is written apart
// from the renderer in internal/manifests on purpose: a renderer bug in a key name shows up as a mismatch.
package supervisoryaml

import "sigs.k8s.io/yaml"

// File is the part of the upstream supervisor's config that LinkMesh renders.
type File struct {
	Server struct {
		Endpoint string            `json:"endpoint"`
		Headers  map[string]string `json:"headers"`
		TLS      struct {
			Insecure bool `json:"insecure"`
		} `json:"tls"`
	} `json:"server"`
	Capabilities map[string]bool `json:"capabilities"`
	Agent        struct {
		Executable         string `json:"executable"`
		ValidateConfig     bool   `json:"validate_config"`
		ConfigApplyTimeout string `json:"config_apply_timeout"`
		BootstrapTimeout   string `json:"bootstrap_timeout"`
		Description        struct {
			NonIdentifyingAttributes map[string]string `json:"non_identifying_attributes"`
		} `json:"description"`
	} `json:"agent"`
	Storage struct {
		Directory string `json:"directory"`
	} `json:"storage"`
}

// Parse reads b strictly: a key File does not know is an error, so nothing unexpected reaches a supervisor.
func Parse(b []byte) (*File, error) {
	f := &File{}
	if err := yaml.UnmarshalStrict(b, f); err != nil {
		return nil, err
	}
	return f, nil
}
