package manifests

import (
	"fmt"
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/util/version"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
)

// Versions of the upstream opampsupervisor that the rendering knows about.
const (
	// DefaultPodSupervisorVersion is the supervisor in DefaultSupervisorImage, the one this repository builds
	// and runs end to end. Pods whose image tag is not a version and that set no spec.supervisor.version are
	// rendered for it.
	DefaultPodSupervisorVersion = "0.149.0"
	// DefaultHostSupervisorVersion is what install-opamp.sh installs without --supervisor-version, the
	// product document's default. A bootstrap config fetched without a version is rendered for it.
	DefaultHostSupervisorVersion = "0.135.0"
	// MinSupervisorVersion is the oldest supervisor whose config keys the rules below are known to cover:
	// the product document's default. Upstream refuses unknown keys, so an older one is refused rather than
	// handed a file it may not read.
	MinSupervisorVersion = "0.135.0"
)

// keyRule is one supervisor.yaml key whose acceptance changed upstream: written for versions from since
// (empty: every version) up to, but not including, until (empty: no end). The upstream opampsupervisor loads
// its config strictly (confmap with ErrorUnused since contrib PR #36148, v0.115.0), so a key a version does not
// know stops it at start-up.
type keyRule struct {
	// key is the dotted path in supervisor.yaml.
	key string
	// since is the first version that is given the key.
	since string
	// until is the first version that is no longer given the key.
	until string
	// upstream is the change that motivates the row.
	upstream string
}

// keyRules is the one table of version-dependent keys. Keys not listed are written for every version from
// MinSupervisorVersion on. A row that decides from a release note rather than from a supervisor run here says
// so; only DefaultPodSupervisorVersion is built and run by the end-to-end tests.
var keyRules = []keyRule{
	{
		key:   "agent.validate_config",
		since: "0.149.0",
		upstream: "contrib PR #46144 (merged 2026-02) added agent.validate_config, after 0.135.0 was released; " +
			"0.149.0 is the oldest release proven here to accept it, so older ones are not given it",
	},
	{
		key:   "capabilities.reports_remote_config",
		until: "0.161.0",
		upstream: "contrib PR #50684, v0.161.0: accepts_remote_config turns ReportsRemoteConfig on and setting " +
			"reports_remote_config logs an error; issue #49763 plans its removal for about v0.165.0, after which " +
			"the key fails the config",
	},
}

// supervisorVersionRE is a release version as upstream tags them, with or without the v.
var supervisorVersionRE = regexp.MustCompile(`^v?[0-9]{1,4}\.[0-9]{1,4}\.[0-9]{1,4}$`)

// ParseSupervisorVersion checks that s is a supervisor release version (0.149.0 or v0.149.0) that the rules
// cover. Its errors say what is wrong, for an HTTP 400 or a condition.
func ParseSupervisorVersion(s string) (*version.Version, error) {
	if !supervisorVersionRE.MatchString(s) {
		return nil, fmt.Errorf("supervisor version %q is not a release version such as %s", truncateForError(s), DefaultPodSupervisorVersion)
	}
	v, err := version.ParseGeneric(s)
	if err != nil {
		return nil, fmt.Errorf("supervisor version %q: %w", s, err)
	}
	if v.LessThan(version.MustParseGeneric(MinSupervisorVersion)) {
		return nil, fmt.Errorf("supervisor version %s is older than %s, the oldest LinkMesh renders supervisor.yaml for: install %s or later",
			s, MinSupervisorVersion, MinSupervisorVersion)
	}
	return v, nil
}

// writesKey says whether the supervisor at v is given key: false only when a row of keyRules excludes v.
func writesKey(v *version.Version, key string) bool {
	for _, r := range keyRules {
		if r.key != key {
			continue
		}
		if r.since != "" && v.LessThan(version.MustParseGeneric(r.since)) {
			return false
		}
		if r.until != "" && v.AtLeast(version.MustParseGeneric(r.until)) {
			return false
		}
	}
	return true
}

// PodSupervisorVersion is the supervisor version a ManagedCollector's pods run: spec.supervisor.version,
// else the tag of the supervisor image (spec.images.supervisor or defaultImage) when it is a version, else
// DefaultPodSupervisorVersion.
func PodSupervisorVersion(mc *v1alpha1.ManagedCollector, defaultImage string) string {
	if v := mc.Spec.Supervisor.Version; v != "" {
		return v
	}
	image := mc.Spec.Images.Supervisor
	if image == "" {
		image = defaultImage
	}
	if tag := imageTag(image); supervisorVersionRE.MatchString(tag) {
		return tag
	}
	return DefaultPodSupervisorVersion
}

// imageTag is the tag of an image reference (registry[:port]/path:tag[@digest]), empty when it has none.
func imageTag(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")
	name := ref[strings.LastIndex(ref, "/")+1:]
	_, tag, _ := strings.Cut(name, ":")
	return tag
}

func truncateForError(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
