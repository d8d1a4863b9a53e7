package fleet

import (
	"testing"

	. "github.com/onsi/gomega"

	"github.com/linkmesh/linkmesh-operator/internal/collectorconfig"
)

// TestShapesAreShared: effective configs that differ only in settings (the supervisor's instance UID and
// PID in the opamp extension) share one shape; another structure gets its own.
func TestShapesAreShared(t *testing.T) {
	g := NewWithT(t)
	effective := func(uid, pid, pipeline string) *collectorconfig.Shape {
		s, err := collectorconfig.ParseShape(`receivers: {otlp: {protocols: {grpc: {}}}}
exporters: {debug: {verbosity: basic}}
extensions:
  opamp: {instance_uid: "` + uid + `", ppid: ` + pid + `, server: {ws: {endpoint: "ws://127.0.0.1:4321/v1/opamp"}}}
service:
  extensions: [opamp]
  pipelines: {` + pipeline + `: {receivers: [otlp], exporters: [debug]}}
`)
		g.Expect(err).NotTo(HaveOccurred())
		return s
	}
	var table shapeTable
	first := table.intern(effective("0190c8a2-0000-7000-8000-000000000001", "41", "traces"))
	second := table.intern(effective("0190c8a2-0000-7000-8000-000000000002", "97", "traces"))
	g.Expect(second).To(BeIdenticalTo(first))
	other := table.intern(effective("0190c8a2-0000-7000-8000-000000000003", "41", "logs"))
	g.Expect(other).NotTo(BeIdenticalTo(first))
	g.Expect(other.Pipelines).To(HaveKey("logs"))
}
