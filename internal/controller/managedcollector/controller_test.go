package managedcollector_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
	"github.com/linkmesh/linkmesh-operator/test/framework/supervisoryaml"
	"github.com/linkmesh/linkmesh-operator/test/framework/testenv"
)

const validConfig = `# kept byte for byte
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 0.0.0.0:4317
processors:
  batch:
exporters:
  debug:
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [debug]
`

const (
	timeout  = 30 * time.Second
	interval = 100 * time.Millisecond
)

func newNamespace(t *testing.T) string { return testenv.Namespace(t, env.Client, "mc") }

func newCollector(ns, name string, mutate func(*v1alpha1.ManagedCollector)) *v1alpha1.ManagedCollector {
	mc := &v1alpha1.ManagedCollector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.ManagedCollectorSpec{Config: validConfig},
	}
	if mutate != nil {
		mutate(mc)
	}
	return mc
}

func get[T client.Object](g Gomega, ns, name string, obj T) T {
	g.Expect(env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, obj)).To(Succeed())
	return obj
}

func condition(mc *v1alpha1.ManagedCollector, t string) *metav1.Condition {
	return apimeta.FindStatusCondition(mc.Status.Conditions, t)
}

// waitReconciled waits until status describes the current generation.
func waitReconciled(t *testing.T, ns, name string) *v1alpha1.ManagedCollector {
	t.Helper()
	g := NewWithT(t)
	mc := &v1alpha1.ManagedCollector{}
	g.Eventually(func(g Gomega) {
		get(g, ns, name, mc)
		g.Expect(mc.Status.ObservedGeneration).To(Equal(mc.Generation))
		g.Expect(condition(mc, v1alpha1.ConditionConfigValid)).NotTo(BeNil())
		g.Expect(condition(mc, v1alpha1.ConditionConfigValid).ObservedGeneration).To(Equal(mc.Generation))
	}, timeout, interval).Should(Succeed())
	return mc
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestDaemonSetModeProducesSecretConfigMapAndDaemonSet(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	mc := newCollector(ns, "edge", func(mc *v1alpha1.ManagedCollector) {
		mc.Spec.Supervisor.NonIdentifyingAttributes = map[string]string{"linkmesh.environment": "production"}
		mc.Spec.Supervisor.ConfigApplyTimeout = &metav1.Duration{Duration: 3 * time.Second}
		mc.Spec.ImagePullPolicy = corev1.PullNever
		mc.Spec.HostNetwork = true
		mc.Spec.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
		mc.Spec.Volumes = []corev1.Volume{{Name: "varlog", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/log"}}}}
		mc.Spec.VolumeMounts = []corev1.VolumeMount{{Name: "varlog", MountPath: "/var/log", ReadOnly: true}}
	})
	g.Expect(env.Client.Create(ctx, mc)).To(Succeed())
	applied := mc.DeepCopy()
	mc = waitReconciled(t, ns, "edge")

	// The Secret: two distinct 256-bit tokens.
	secret := &corev1.Secret{}
	g.Eventually(func(g Gomega) { get(g, ns, "edge-collector-credentials", secret) }, timeout, interval).Should(Succeed())
	collectorTok := string(secret.Data[naming.CollectorTokenKey])
	metricsTok := string(secret.Data[naming.OwnMetricsTokenKey])
	g.Expect(collectorTok).To(HavePrefix("lmc_"))
	g.Expect(len(collectorTok)).To(BeNumerically(">=", 4+43))
	g.Expect(metricsTok).To(HavePrefix("lmm_"))
	g.Expect(metricsTok).NotTo(Equal(collectorTok))

	// The ConfigMap: supervisor.yaml as the supervisor reads it, and the accepted config byte for byte.
	cm := get(g, ns, "edge-supervisor", &corev1.ConfigMap{})
	g.Expect(cm.Data["collector.yaml"]).To(Equal(validConfig))
	sup, err := supervisoryaml.Parse([]byte(cm.Data["supervisor.yaml"]))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(sup.Server.Endpoint).To(Equal("ws://linkmesh-operator.linkmesh-system.svc:4320/v1/opamp"))
	g.Expect(sup.Server.Headers).To(HaveKeyWithValue("Authorization", "Bearer ${env:LINKMESH_COLLECTOR_TOKEN}"))
	g.Expect(cm.Data["supervisor.yaml"]).NotTo(ContainSubstring(collectorTok), "the token must not sit in the ConfigMap")
	for _, c := range []string{"accepts_remote_config", "accepts_restart_command", "reports_remote_config", "reports_effective_config", "reports_health", "reports_own_metrics", "reports_heartbeat"} {
		g.Expect(sup.Capabilities).To(HaveKeyWithValue(c, true))
	}
	g.Expect(sup.Agent.Executable).To(Equal("/otelcol-contrib"))
	g.Expect(sup.Agent.ValidateConfig).To(BeTrue())
	g.Expect(sup.Agent.ConfigApplyTimeout).To(Equal("3s"))
	g.Expect(sup.Agent.BootstrapTimeout).To(Equal("20s"))
	g.Expect(sup.Agent.Description.NonIdentifyingAttributes).To(Equal(map[string]string{
		"linkmesh.environment": "production",
		"k8s.node.name":        "${env:K8S_NODE_NAME}",
		"k8s.pod.name":         "${env:K8S_POD_NAME}",
	}))
	g.Expect(sup.Storage.Directory).To(Equal("/var/lib/otelcol-supervisor"))

	// The DaemonSet: the pod sees the token from the Secret and the ConfigMap as files.
	ds := get(g, ns, "edge-collector", &appsv1.DaemonSet{})
	pod := ds.Spec.Template.Spec
	g.Expect(ds.Spec.Template.Annotations).To(HaveKeyWithValue(naming.AnnotationSupervisorConfigHash, sha(cm.Data["supervisor.yaml"])))
	g.Expect(pod.HostNetwork).To(BeTrue())
	g.Expect(pod.DNSPolicy).To(Equal(corev1.DNSClusterFirstWithHostNet))
	g.Expect(pod.Tolerations).To(HaveLen(1))
	g.Expect(pod.Containers).To(HaveLen(1))
	ctr := pod.Containers[0]
	g.Expect(ctr.ImagePullPolicy).To(Equal(corev1.PullNever))
	g.Expect(ctr.Command).To(Equal([]string{"/linkmesh-agent-init", "--", "/opampsupervisor", "--config", "/etc/otelcol-supervisor/supervisor.yaml"}))
	var tokenEnv *corev1.EnvVar
	for i := range ctr.Env {
		if ctr.Env[i].Name == "LINKMESH_COLLECTOR_TOKEN" {
			tokenEnv = &ctr.Env[i]
		}
	}
	g.Expect(tokenEnv).NotTo(BeNil())
	g.Expect(tokenEnv.Value).To(BeEmpty())
	g.Expect(tokenEnv.ValueFrom.SecretKeyRef.Name).To(Equal("edge-collector-credentials"))
	g.Expect(tokenEnv.ValueFrom.SecretKeyRef.Key).To(Equal(naming.CollectorTokenKey))
	mounts := map[string]string{}
	for _, m := range ctr.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	g.Expect(mounts).To(Equal(map[string]string{
		"linkmesh-supervisor-config": "/etc/otelcol-supervisor",
		"linkmesh-storage":           "/var/lib/otelcol-supervisor",
		"varlog":                     "/var/log",
	}))
	for _, v := range pod.Volumes {
		switch v.Name {
		case "linkmesh-supervisor-config":
			g.Expect(v.ConfigMap.Name).To(Equal("edge-supervisor"))
		case "linkmesh-storage":
			g.Expect(v.HostPath.Path).To(Equal("/var/lib/linkmesh/" + ns + "/edge"))
		}
	}

	// Owner references and the server-side apply field owner on every owned object.
	for _, o := range []client.Object{secret, cm, ds} {
		ref := metav1.GetControllerOf(o)
		g.Expect(ref).NotTo(BeNil(), "%T has no controller reference", o)
		g.Expect(ref.UID).To(Equal(mc.UID))
		g.Expect(ref.Kind).To(Equal("ManagedCollector"))
		g.Expect(managers(o)).To(ContainElement("linkmesh-operator/Apply"), "%T is not server-side applied", o)
	}

	// Status: the config is valid, nothing is connected, so not Ready.
	g.Expect(mc.Status.ConfigHash).To(Equal(sha(validConfig)))
	g.Expect(condition(mc, v1alpha1.ConditionConfigValid).Status).To(Equal(metav1.ConditionTrue))
	ready := condition(mc, v1alpha1.ConditionReady)
	g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
	g.Expect(ready.Reason).To(Equal(v1alpha1.ReasonNoAgentsConnected))
	g.Expect(mc.Status.Connected).To(Equal("0"), "nothing is desired: no denominator")

	// The controller never writes spec: it is as applied, and our field manager owns only status.
	g.Expect(mc.Spec).To(Equal(withDefaults(applied.Spec)))
	g.Expect(mc.Generation).To(Equal(int64(1)))
	for _, mf := range mc.ManagedFields {
		if mf.Manager == naming.FieldOwner {
			g.Expect(mf.Subresource).To(Equal("status"), "the operator wrote %s outside status", mf.Operation)
		}
	}
}

// withDefaults is what the API server's CRD defaulting adds to an applied spec.
func withDefaults(s v1alpha1.ManagedCollectorSpec) v1alpha1.ManagedCollectorSpec {
	if s.Mode == "" {
		s.Mode = v1alpha1.ModeDaemonSet
	}
	return s
}

func managers(o client.Object) []string {
	var out []string
	for _, mf := range o.GetManagedFields() {
		out = append(out, mf.Manager+"/"+string(mf.Operation))
	}
	return out
}

func TestTokensSurviveUpdatesAndSupervisorChangesRollPods(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	g.Expect(env.Client.Create(ctx, newCollector(ns, "roll", nil))).To(Succeed())
	waitReconciled(t, ns, "roll")
	secret := &corev1.Secret{}
	g.Eventually(func(g Gomega) { get(g, ns, "roll-collector-credentials", secret) }, timeout, interval).Should(Succeed())
	ds := &appsv1.DaemonSet{}
	g.Eventually(func(g Gomega) { get(g, ns, "roll-collector", ds) }, timeout, interval).Should(Succeed())
	hashBefore := ds.Spec.Template.Annotations[naming.AnnotationSupervisorConfigHash]

	// A collector config change is pushed over OpAMP: the pods do not roll.
	mc := get(g, ns, "roll", &v1alpha1.ManagedCollector{})
	mc.Spec.Config = strings.Replace(validConfig, "# kept byte for byte", "# edited", 1)
	g.Expect(env.Client.Update(ctx, mc)).To(Succeed())
	mc = waitReconciled(t, ns, "roll")
	g.Expect(mc.Status.ConfigHash).To(Equal(sha(mc.Spec.Config)))
	g.Eventually(func(g Gomega) {
		cm := get(g, ns, "roll-supervisor", &corev1.ConfigMap{})
		g.Expect(cm.Data["collector.yaml"]).To(Equal(mc.Spec.Config))
	}, timeout, interval).Should(Succeed())
	get(g, ns, "roll-collector", ds)
	g.Expect(ds.Spec.Template.Annotations[naming.AnnotationSupervisorConfigHash]).To(Equal(hashBefore))

	// A supervisor change does roll them.
	mc.Spec.Supervisor.NonIdentifyingAttributes = map[string]string{"team": "edge"}
	g.Expect(env.Client.Update(ctx, mc)).To(Succeed())
	g.Eventually(func(g Gomega) {
		get(g, ns, "roll-collector", ds)
		g.Expect(ds.Spec.Template.Annotations[naming.AnnotationSupervisorConfigHash]).NotTo(Equal(hashBefore))
	}, timeout, interval).Should(Succeed())

	after := get(g, ns, "roll-collector-credentials", &corev1.Secret{})
	g.Expect(after.Data).To(Equal(secret.Data), "tokens must be minted once")
}

func TestInvalidConfigChangesNothing(t *testing.T) {
	cases := []struct {
		name, config, message string
	}{
		{"not YAML", "receivers: [otlp\n", "config is not valid YAML"},
		{"not a map", "- receivers\n- exporters\n", "config must be a YAML map"},
		{"no pipelines", "receivers:\n  otlp:\nservice:\n  telemetry: {}\n", "no service.pipelines"},
		{"undefined receiver", strings.Replace(validConfig, "receivers: [otlp]", "receivers: [filelog]", 1), `references receiver "filelog", which is not defined in receivers`},
		{"undefined processor", strings.Replace(validConfig, "processors: [batch]", "processors: [memory_limiter]", 1), `references processor "memory_limiter"`},
		{"undefined exporter", strings.Replace(validConfig, "exporters: [debug]", "exporters: [otlphttp]", 1), `references exporter "otlphttp"`},
	}
	ctx := context.Background()
	ns := newNamespace(t)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			name := fmt.Sprintf("bad%d", i)
			g.Expect(env.Client.Create(ctx, newCollector(ns, name, nil))).To(Succeed())
			waitReconciled(t, ns, name)
			cm, ds := &corev1.ConfigMap{}, &appsv1.DaemonSet{}
			g.Eventually(func(g Gomega) {
				get(g, ns, name+"-supervisor", cm)
				get(g, ns, name+"-collector", ds)
			}, timeout, interval).Should(Succeed())

			mc := get(g, ns, name, &v1alpha1.ManagedCollector{})
			mc.Spec.Config = c.config
			g.Expect(env.Client.Update(ctx, mc)).To(Succeed())
			mc = waitReconciled(t, ns, name)

			valid := condition(mc, v1alpha1.ConditionConfigValid)
			g.Expect(valid.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(valid.Reason).To(Equal(v1alpha1.ReasonConfigInvalid))
			g.Expect(valid.Message).To(ContainSubstring(c.message))
			ready := condition(mc, v1alpha1.ConditionReady)
			g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(ready.Reason).To(Equal(v1alpha1.ReasonConfigInvalid))
			// The collectors keep the last accepted config, and status says which.
			g.Expect(mc.Status.ConfigHash).To(Equal(sha(validConfig)))

			g.Eventually(func(g Gomega) {
				g.Expect(warnings(g, ns, name)).To(ContainElement(And(
					HaveField("Reason", v1alpha1.EventConfigInvalid),
					HaveField("Note", ContainSubstring(c.message)),
				)))
			}, timeout, interval).Should(Succeed())

			cmAfter := get(g, ns, name+"-supervisor", &corev1.ConfigMap{})
			dsAfter := get(g, ns, name+"-collector", &appsv1.DaemonSet{})
			g.Expect(cmAfter.ResourceVersion).To(Equal(cm.ResourceVersion), "the ConfigMap changed")
			g.Expect(cmAfter.Data["collector.yaml"]).To(Equal(validConfig))
			g.Expect(dsAfter.ResourceVersion).To(Equal(ds.ResourceVersion), "the DaemonSet changed")

			// Fixing the config makes it valid again.
			mc.Spec.Config = validConfig + "# fixed\n"
			g.Expect(env.Client.Update(ctx, mc)).To(Succeed())
			mc = waitReconciled(t, ns, name)
			g.Expect(condition(mc, v1alpha1.ConditionConfigValid).Status).To(Equal(metav1.ConditionTrue))
			g.Expect(mc.Status.ConfigHash).To(Equal(sha(validConfig + "# fixed\n")))
		})
	}
}

func warnings(g Gomega, ns, name string) []eventsv1.Event {
	list := &eventsv1.EventList{}
	g.Expect(env.Client.List(context.Background(), list, client.InNamespace(ns))).To(Succeed())
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Name == name && e.Type == corev1.EventTypeWarning {
			out = append(out, e)
		}
	}
	return out
}

func TestInvalidConfigFromTheStartCreatesNoWorkload(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	g.Expect(env.Client.Create(ctx, newCollector(ns, "never", func(mc *v1alpha1.ManagedCollector) {
		mc.Spec.Config = "service: {}\n"
	}))).To(Succeed())
	mc := waitReconciled(t, ns, "never")
	g.Expect(condition(mc, v1alpha1.ConditionConfigValid).Status).To(Equal(metav1.ConditionFalse))
	g.Expect(mc.Status.ConfigHash).To(BeEmpty())
	err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "never-collector"}, &appsv1.DaemonSet{})
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "a DaemonSet was created for a config that never validated: %v", err)
}

func TestExternalModeRemovesTheDaemonSet(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	g.Expect(env.Client.Create(ctx, newCollector(ns, "hosts", nil))).To(Succeed())
	g.Eventually(func(g Gomega) { get(g, ns, "hosts-collector", &appsv1.DaemonSet{}) }, timeout, interval).Should(Succeed())

	mc := get(g, ns, "hosts", &v1alpha1.ManagedCollector{})
	mc.Spec.Mode = v1alpha1.ModeExternal
	g.Expect(env.Client.Update(ctx, mc)).To(Succeed())
	g.Eventually(func(g Gomega) {
		err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "hosts-collector"}, &appsv1.DaemonSet{})
		g.Expect(apierrors.IsNotFound(err)).To(BeTrue())
	}, timeout, interval).Should(Succeed())
	// External means enrolled hosts only: the pods' credentials go; hosts still need the accepted config.
	g.Eventually(func(g Gomega) {
		err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "hosts-collector-credentials"}, &corev1.Secret{})
		g.Expect(apierrors.IsNotFound(err)).To(BeTrue())
	}, timeout, interval).Should(Succeed())
	get(g, ns, "hosts-supervisor", &corev1.ConfigMap{})

	// Created in External mode, it never gets a DaemonSet.
	g.Expect(env.Client.Create(ctx, newCollector(ns, "ext", func(mc *v1alpha1.ManagedCollector) { mc.Spec.Mode = v1alpha1.ModeExternal }))).To(Succeed())
	waitReconciled(t, ns, "ext")
	g.Eventually(func(g Gomega) { get(g, ns, "ext-supervisor", &corev1.ConfigMap{}) }, timeout, interval).Should(Succeed())
	err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "ext-collector"}, &appsv1.DaemonSet{})
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue())
	err = env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "ext-collector-credentials"}, &corev1.Secret{})
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "External mode mints no pod credentials")
}

func TestForeignSecretIsNeverTakenOver(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	foreign := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "taken-collector-credentials"},
		StringData: map[string]string{"password": "hunter2"},
	}
	g.Expect(env.Client.Create(ctx, foreign)).To(Succeed())
	g.Expect(env.Client.Create(ctx, newCollector(ns, "taken", nil))).To(Succeed())
	g.Eventually(func(g Gomega) {
		mc := get(g, ns, "taken", &v1alpha1.ManagedCollector{})
		ready := condition(mc, v1alpha1.ConditionReady)
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.Reason).To(Equal(v1alpha1.ReasonApplyFailed))
		g.Expect(ready.Message).To(ContainSubstring("is not owned by this resource"))
	}, timeout, interval).Should(Succeed())
	after := get(g, ns, "taken-collector-credentials", &corev1.Secret{})
	g.Expect(after.Data).To(Equal(map[string][]byte{"password": []byte("hunter2")}))
	g.Expect(after.OwnerReferences).To(BeEmpty())
}

func TestAPIServerRefusesWhatCanBeCheckedStatically(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	cases := []struct {
		name    string
		mutate  func(*v1alpha1.ManagedCollector)
		message string
	}{
		{"unknown mode", func(mc *v1alpha1.ManagedCollector) { mc.Spec.Mode = "Sidecar" }, `spec.mode: Unsupported value: "Sidecar"`},
		{"empty config", func(mc *v1alpha1.ManagedCollector) { mc.Spec.Config = "" }, "spec.config"},
		{"apply timeout too short", func(mc *v1alpha1.ManagedCollector) {
			mc.Spec.Supervisor.ConfigApplyTimeout = &metav1.Duration{Duration: 100 * time.Millisecond}
		}, "configApplyTimeout must be between 1s and 10m"},
		{"reserved env", func(mc *v1alpha1.ManagedCollector) {
			mc.Spec.Env = []corev1.EnvVar{{Name: "LINKMESH_COLLECTOR_TOKEN", Value: "x"}}
		}, "env names starting with LINKMESH_ are reserved"},
		{"reserved volume", func(mc *v1alpha1.ManagedCollector) {
			mc.Spec.Volumes = []corev1.Volume{{Name: "linkmesh-storage", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		}, "volume names starting with linkmesh- are reserved"},
		{"unknown pull policy", func(mc *v1alpha1.ManagedCollector) { mc.Spec.ImagePullPolicy = "Sometimes" }, "spec.imagePullPolicy"},
		{"relative collector path", func(mc *v1alpha1.ManagedCollector) { mc.Spec.Images.CollectorExecutable = "otelcol" }, "spec.images.collectorExecutable"},
		{"name too long", func(mc *v1alpha1.ManagedCollector) { mc.Name = strings.Repeat("a", 48) }, "metadata.name must be at most 47 characters"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			mc := newCollector(ns, "static", c.mutate)
			err := env.Client.Create(ctx, mc)
			g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want Invalid, got %v", err)
			g.Expect(err.Error()).To(ContainSubstring(c.message))
		})
	}
}

// TestSamplesAreAcceptedAndValid applies config/samples as a user would and expects valid configs.
func TestSamplesAreAcceptedAndValid(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	dir := filepath.Join(testenv.RepoRoot(), "config", "samples")
	files, err := filepath.Glob(filepath.Join(dir, "collectors_*.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(files).NotTo(BeEmpty())
	var collectors []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		g.Expect(err).NotTo(HaveOccurred())
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			u := &unstructured.Unstructured{}
			if err := dec.Decode(&u.Object); err != nil {
				g.Expect(err).To(MatchError(io.EOF))
				break
			}
			u.SetNamespace(ns)
			g.Expect(env.Client.Create(ctx, u)).To(Succeed(), "%s: %s", filepath.Base(f), u.GetName())
			if u.GetKind() == "ManagedCollector" {
				collectors = append(collectors, u.GetName())
			}
		}
	}
	g.Expect(collectors).NotTo(BeEmpty())
	for _, name := range collectors {
		mc := waitReconciled(t, ns, name)
		g.Expect(condition(mc, v1alpha1.ConditionConfigValid).Status).To(Equal(metav1.ConditionTrue), "sample %s: %s", name, condition(mc, v1alpha1.ConditionConfigValid).Message)
	}
}
