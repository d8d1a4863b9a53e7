package collectorconfig

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// Shape is the structure of a collector config that drift detection compares: which components are defined
// and which pipelines wire them. Component settings are left out: the collector reports its effective
// config with variables expanded and secrets redacted, so only the structure can be compared.
type Shape struct {
	// Components are the defined IDs, by section (receivers, processors, exporters, connectors, extensions).
	Components map[string]map[string]bool
	// Pipelines map each pipeline ID to its receivers, processors and exporters, in order.
	Pipelines map[string]map[string][]string
	// Extensions are service.extensions.
	Extensions map[string]bool
}

var sections = []string{"receivers", "processors", "exporters", "connectors", "extensions"}

// ParseShape reads the structure of a config.
func ParseShape(config string) (*Shape, error) {
	var root map[string]any
	if err := yaml.Unmarshal([]byte(config), &root); err != nil {
		return nil, fmt.Errorf("config is not valid YAML: %w", err)
	}
	s := &Shape{Components: map[string]map[string]bool{}, Pipelines: map[string]map[string][]string{}, Extensions: map[string]bool{}}
	for _, sec := range sections {
		s.Components[sec] = map[string]bool{}
		if m, ok := root[sec].(map[string]any); ok {
			for id := range m {
				s.Components[sec][id] = true
			}
		}
	}
	service, _ := root["service"].(map[string]any)
	pipelines, _ := service["pipelines"].(map[string]any)
	for name, p := range pipelines {
		pm, _ := p.(map[string]any)
		wiring := map[string][]string{}
		for _, field := range []string{"receivers", "processors", "exporters"} {
			ids, _ := idList(pm[field])
			wiring[field] = ids
		}
		s.Pipelines[name] = wiring
	}
	exts, _ := idList(service["extensions"])
	for _, id := range exts {
		s.Extensions[id] = true
	}
	return s, nil
}

// Key is a canonical string of the shape: two shapes have the same Key exactly when they define the same
// components, pipelines (wired in the same order) and service extensions.
func (s *Shape) Key() string {
	var b strings.Builder
	for _, sec := range sections {
		b.WriteString(sec)
		b.WriteByte(':')
		for _, id := range slices.Sorted(maps.Keys(s.Components[sec])) {
			b.WriteString(strconv.Quote(id))
			b.WriteByte(',')
		}
		b.WriteByte(';')
	}
	b.WriteString("pipelines:")
	for _, name := range slices.Sorted(maps.Keys(s.Pipelines)) {
		b.WriteString(strconv.Quote(name))
		for _, field := range []string{"receivers", "processors", "exporters"} {
			b.WriteByte('/')
			for _, id := range s.Pipelines[name][field] {
				b.WriteString(strconv.Quote(id))
				b.WriteByte(',')
			}
		}
		b.WriteByte(';')
	}
	b.WriteString("extensions:")
	for _, id := range slices.Sorted(maps.Keys(s.Extensions)) {
		b.WriteString(strconv.Quote(id))
		b.WriteByte(',')
	}
	return b.String()
}

// Missing lists what of desired the effective config lacks: a pipeline, a pipeline wired differently, a
// component, or a service extension. What the supervisor adds on its own (the opamp extension, its
// telemetry, extra pipelines) is not drift. Empty means the effective config runs the desired one.
func Missing(desired, effective *Shape) []string {
	var out []string
	for _, sec := range sections {
		for _, id := range slices.Sorted(maps.Keys(desired.Components[sec])) {
			if !effective.Components[sec][id] {
				out = append(out, fmt.Sprintf("%s %q", singular(sec), id))
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(desired.Pipelines)) {
		got, ok := effective.Pipelines[name]
		if !ok {
			out = append(out, fmt.Sprintf("pipeline %q", name))
			continue
		}
		for _, field := range []string{"receivers", "processors", "exporters"} {
			if !slices.Equal(desired.Pipelines[name][field], got[field]) {
				out = append(out, fmt.Sprintf("pipeline %q %s %v (runs %v)", name, field, desired.Pipelines[name][field], got[field]))
			}
		}
	}
	for _, id := range slices.Sorted(maps.Keys(desired.Extensions)) {
		if !effective.Extensions[id] {
			out = append(out, fmt.Sprintf("service extension %q", id))
		}
	}
	return out
}

// singular names one component of a section: "receivers" -> "receiver".
func singular(section string) string { return section[:len(section)-1] }
