package manifests

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/test/framework/supervisoryaml"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const testEndpoint = "ws://linkmesh-operator.linkmesh-system.svc:4320/v1/opamp"

func collector(mutate func(*v1alpha1.ManagedCollector)) *v1alpha1.ManagedCollector {
	mc := &v1alpha1.ManagedCollector{
		ObjectMeta: metav1.ObjectMeta{Name: "edge", Namespace: "observability", UID: "0b5a4d9e-6f1c-4c55-9b8a-2d0e1c3f4a5b"},
		Spec: v1alpha1.ManagedCollectorSpec{
			Config: "receivers:\n  otlp:\nexporters:\n  debug:\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n",
		},
	}
	if mutate != nil {
		mutate(mc)
	}
	return mc
}

func TestGolden(t *testing.T) {
	cases := []struct {
		name string
		mc   *v1alpha1.ManagedCollector
	}{
		{name: "defaults", mc: collector(nil)},
		{name: "all-pod-settings", mc: collector(func(mc *v1alpha1.ManagedCollector) {
			mc.Spec.Supervisor = v1alpha1.SupervisorSpec{
				ConfigApplyTimeout:       &metav1.Duration{Duration: 2 * time.Second},
				NonIdentifyingAttributes: map[string]string{"linkmesh.environment": "production", "team": "edge"},
				OwnMetrics:               ptr.To(false),
			}
			mc.Spec.Images = v1alpha1.ImagesSpec{
				Supervisor:          "registry.example/linkmesh/supervisor:0.149.0",
				Collector:           "registry.example/otel/opentelemetry-collector-contrib:0.149.0",
				CollectorExecutable: "/otelcol-contrib",
			}
			mc.Spec.ImagePullPolicy = corev1.PullNever
			mc.Spec.Resources = corev1.ResourceRequirements{
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")},
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")},
			}
			mc.Spec.NodeSelector = map[string]string{"kubernetes.io/os": "linux"}
			mc.Spec.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
			mc.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
					MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "node-role.kubernetes.io/edge", Operator: corev1.NodeSelectorOpExists}},
				}}},
			}}
			mc.Spec.PriorityClassName = "system-node-critical"
			mc.Spec.ServiceAccountName = "collector"
			mc.Spec.Env = []corev1.EnvVar{{Name: "BACKEND", Value: "otlp.example:4317"}}
			mc.Spec.Volumes = []corev1.Volume{{Name: "varlog", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/log"}}}}
			mc.Spec.VolumeMounts = []corev1.VolumeMount{{Name: "varlog", MountPath: "/var/log", ReadOnly: true}}
			mc.Spec.UpdateStrategy = appsv1.DaemonSetUpdateStrategy{
				Type:          appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: ptr.To(intstr.FromString("25%"))},
			}
			mc.Spec.HostNetwork = true
		})},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sup, err := PodSupervisorYAML(c.mc, testEndpoint, DefaultSupervisorImage)
			if err != nil {
				t.Fatal(err)
			}
			objs := []any{
				CredentialsSecret(c.mc, CollectorTokens{Collector: "lmc_collector-token", OwnMetrics: "lmm_own-metrics-token"}),
				mustConfigMap(t, c.mc, sup, Accepted{Config: c.mc.Spec.Config}),
				DaemonSet(c.mc, SupervisorConfigHash(sup), DefaultSupervisorImage),
			}
			var buf bytes.Buffer
			for _, o := range objs {
				out, err := yaml.Marshal(o)
				if err != nil {
					t.Fatal(err)
				}
				buf.WriteString("---\n")
				buf.Write(out)
			}
			compareGolden(t, filepath.Join("testdata", c.name+".golden.yaml"), buf.Bytes())
		})
	}
}

func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/manifests -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the rendered output; if the change is intended, run go test ./internal/manifests -update and review the diff.\n--- got\n%s", path, got)
	}
}

func TestPodSupervisorYAML(t *testing.T) {
	mc := collector(func(mc *v1alpha1.ManagedCollector) {
		mc.Spec.Supervisor.NonIdentifyingAttributes = map[string]string{"linkmesh.environment": "production"}
	})
	out, err := PodSupervisorYAML(mc, testEndpoint, DefaultSupervisorImage)
	if err != nil {
		t.Fatal(err)
	}
	f, err := supervisoryaml.Parse(out)
	if err != nil {
		t.Fatalf("supervisor.yaml does not parse: %v", err)
	}
	if f.Server.Endpoint != testEndpoint || !f.Server.TLS.Insecure {
		t.Errorf("endpoint = %q", f.Server.Endpoint)
	}
	if got := f.Server.Headers["Authorization"]; got != "Bearer ${env:LINKMESH_COLLECTOR_TOKEN}" {
		t.Errorf("Authorization = %q, want the token to come from the environment", got)
	}
	for _, capability := range []string{"accepts_remote_config", "accepts_restart_command", "reports_remote_config", "reports_effective_config", "reports_health", "reports_own_metrics", "reports_heartbeat"} {
		if v, ok := f.Capabilities[capability]; !ok || !v {
			t.Errorf("capability %s = %v (present %v), want explicitly true", capability, v, ok)
		}
	}
	if f.Agent.Executable != "/otelcol-contrib" || !f.Agent.ValidateConfig || f.Agent.ConfigApplyTimeout != "5s" || f.Agent.BootstrapTimeout != "20s" {
		t.Errorf("agent = %+v", f.Agent)
	}
	attrs := f.Agent.Description.NonIdentifyingAttributes
	if attrs["linkmesh.environment"] != "production" || attrs["k8s.node.name"] != "${env:K8S_NODE_NAME}" || attrs["k8s.pod.name"] != "${env:K8S_POD_NAME}" {
		t.Errorf("non_identifying_attributes = %v", attrs)
	}
	if f.Storage.Directory != StorageDir {
		t.Errorf("storage.directory = %q", f.Storage.Directory)
	}

	mc.Spec.Supervisor.OwnMetrics = ptr.To(false)
	out, _ = PodSupervisorYAML(mc, testEndpoint, DefaultSupervisorImage)
	if f, err = supervisoryaml.Parse(out); err != nil {
		t.Fatal(err)
	}
	if v, ok := f.Capabilities["reports_own_metrics"]; !ok || v {
		t.Errorf("ownMetrics=false: reports_own_metrics = %v (present %v), want explicitly false", v, ok)
	}
}

func TestCollectorExecutable(t *testing.T) {
	cases := []struct {
		name   string
		images v1alpha1.ImagesSpec
		want   string
	}{
		{"combined image default", v1alpha1.ImagesSpec{}, "/otelcol-contrib"},
		{"combined image custom path", v1alpha1.ImagesSpec{CollectorExecutable: "/usr/bin/otelcol"}, "/usr/bin/otelcol"},
		{"image volume", v1alpha1.ImagesSpec{Collector: "otel/opentelemetry-collector-contrib:0.149.0"}, "/opt/otelcol/otelcol-contrib"},
		{"image volume custom path", v1alpha1.ImagesSpec{Collector: "my/otelcol:1", CollectorExecutable: "/bin/otelcol"}, "/opt/otelcol/bin/otelcol"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mc := collector(func(mc *v1alpha1.ManagedCollector) { mc.Spec.Images = c.images })
			if got := collectorExecutablePath(mc); got != c.want {
				t.Fatalf("executable = %q, want %q", got, c.want)
			}
		})
	}
}

func TestSupervisorConfigHashRollsPods(t *testing.T) {
	a, _ := PodSupervisorYAML(collector(nil), testEndpoint, DefaultSupervisorImage)
	b, _ := PodSupervisorYAML(collector(func(mc *v1alpha1.ManagedCollector) {
		mc.Spec.Supervisor.ConfigApplyTimeout = &metav1.Duration{Duration: time.Second}
	}), testEndpoint, DefaultSupervisorImage)
	c, _ := PodSupervisorYAML(collector(func(mc *v1alpha1.ManagedCollector) { mc.Spec.Config = "other" }), testEndpoint, DefaultSupervisorImage)
	if SupervisorConfigHash(a) == SupervisorConfigHash(b) {
		t.Error("a supervisor.yaml change does not change the pod-template hash")
	}
	if SupervisorConfigHash(a) != SupervisorConfigHash(c) {
		t.Error("a collector config change rolls the pods; it is pushed over OpAMP and must not")
	}
}

func mustConfigMap(t *testing.T, mc *v1alpha1.ManagedCollector, sup []byte, accepted Accepted) *corev1.ConfigMap {
	t.Helper()
	cm, err := SupervisorConfigMap(mc, sup, accepted)
	if err != nil {
		t.Fatal(err)
	}
	return cm
}
