// Package collectorconfig checks a collector configuration before it is pushed anywhere, and hashes it the
// way the OpAMP server reports it.
//
// The checks are the ones that can be made without the collector's component factories: the document is a
// YAML map, it has service.pipelines, every pipeline is of a known signal and references only defined
// receivers, processors, exporters and connectors, and every service extension is defined. The collector's
// own validation (agent.validate_config in supervisor.yaml) catches the rest on the host.
package collectorconfig

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// Hash is the sha256 of the config's exact bytes, hex-encoded: the value collectors report back once they
// run it and the one shown in status.configHash.
func Hash(config string) string {
	sum := HashBytes(config)
	return hex.EncodeToString(sum)
}

// HashBytes is the sha256 of the config's exact bytes, as sent in an OpAMP RemoteConfig's config_hash.
func HashBytes(config string) []byte {
	sum := sha256.Sum256([]byte(config))
	return sum[:]
}

// signals are the pipeline types the collector knows.
var signals = map[string]bool{"traces": true, "metrics": true, "logs": true, "profiles": true}

// Validate returns nil for a config that may be pushed, or an error whose message names every problem found.
func Validate(config string) error {
	var doc any
	if err := yaml.Unmarshal([]byte(config), &doc); err != nil {
		return fmt.Errorf("config is not valid YAML: %w", err)
	}
	root, ok := doc.(map[string]any)
	if !ok {
		return fmt.Errorf("config must be a YAML map with receivers, exporters and service, not %s", kind(doc))
	}
	service, ok := root["service"].(map[string]any)
	if !ok {
		return errors.New("config has no service section: add service.pipelines")
	}
	pipelines, ok := service["pipelines"].(map[string]any)
	if !ok || len(pipelines) == 0 {
		return errors.New("config has no service.pipelines: define at least one pipeline")
	}

	defined := func(section string) map[string]bool {
		out := map[string]bool{}
		if m, ok := root[section].(map[string]any); ok {
			for id := range m {
				out[id] = true
			}
		}
		return out
	}
	receivers, processors, exporters := defined("receivers"), defined("processors"), defined("exporters")
	connectors, extensions := defined("connectors"), defined("extensions")

	var problems []string
	for _, name := range slices.Sorted(maps.Keys(pipelines)) {
		signal, _, _ := strings.Cut(name, "/")
		if !signals[signal] {
			problems = append(problems, fmt.Sprintf("pipeline %q: type %q is not one of traces, metrics, logs, profiles", name, signal))
			continue
		}
		p, ok := pipelines[name].(map[string]any)
		if !ok {
			problems = append(problems, fmt.Sprintf("pipeline %q must be a map with receivers and exporters", name))
			continue
		}
		check := func(field, what string, known ...map[string]bool) {
			ids, err := idList(p[field])
			if err != nil {
				problems = append(problems, fmt.Sprintf("pipeline %q: %s %v", name, field, err))
				return
			}
			if len(ids) == 0 && field != "processors" {
				problems = append(problems, fmt.Sprintf("pipeline %q has no %s", name, field))
			}
			for _, id := range ids {
				if !anyHas(known, id) {
					problems = append(problems, fmt.Sprintf("pipeline %q references %s %q, which is not defined in %s", name, what, id, field))
				}
			}
		}
		check("receivers", "receiver", receivers, connectors)
		check("processors", "processor", processors)
		check("exporters", "exporter", exporters, connectors)
	}
	exts, err := idList(service["extensions"])
	if err != nil {
		problems = append(problems, "service.extensions "+err.Error())
	}
	for _, id := range exts {
		if !extensions[id] {
			problems = append(problems, fmt.Sprintf("service.extensions references %q, which is not defined in extensions", id))
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

func idList(v any) ([]string, error) {
	if v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("must be a list of component IDs, not %s", kind(v))
	}
	out := make([]string, 0, len(list))
	for _, item := range list {
		s, ok := item.(string)
		if !ok || s == "" {
			return nil, fmt.Errorf("must be a list of component IDs, found %s", kind(item))
		}
		out = append(out, s)
	}
	return out, nil
}

func anyHas(sets []map[string]bool, id string) bool {
	for _, s := range sets {
		if s[id] {
			return true
		}
	}
	return false
}

func kind(v any) string {
	switch v.(type) {
	case nil:
		return "an empty document"
	case map[string]any:
		return "a map"
	case []any:
		return "a list"
	case string:
		return "a string"
	default:
		return fmt.Sprintf("a %T", v)
	}
}
