package chart_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

func TestLint(t *testing.T) {
	cases := map[string][]string{"defaults": nil}
	for _, f := range ciValues(t) {
		cases[filepath.Base(f)] = []string{"--values", f}
	}
	for name, extra := range cases {
		t.Run(name, func(t *testing.T) {
			if out, err := runHelm(t, append([]string{"lint", "--strict", chartDir}, extra...)...); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	}
}

// TestRenderIsDeterministic: GitOps tools diff what the chart renders, so the same values must give the same
// bytes, and no template may use a function whose output changes between renders or with the cluster.
func TestRenderIsDeterministic(t *testing.T) {
	sets := []renderOpts{defaultRender()}
	for _, f := range ciValues(t) {
		sets = append(sets, renderOpts{release: release, namespace: namespace, valuesFiles: []string{f}})
	}
	for _, o := range sets {
		t.Run(strings.Join(append([]string{"defaults"}, o.valuesFiles...), " "), func(t *testing.T) {
			first, second := renderText(t, o), renderText(t, o)
			if first != second {
				t.Fatalf("two renders differ:\n--- first\n%s\n--- second\n%s", first, second)
			}
		})
	}

	nondeterministic := regexp.MustCompile(`\b(rand[A-Za-z]*|uuidv4|now|unixEpoch|genCA|genCAWithKey|genSelfSignedCert|genSelfSignedCertWithKey|genSignedCert|genSignedCertWithKey|genPrivateKey|derivePassword|lookup|randBytes)\b`)
	templates, err := filepath.Glob(filepath.Join(chartDir, "templates", "*"))
	if err != nil {
		t.Fatal(err)
	}
	action := regexp.MustCompile(`(?s){{.*?}}`)
	for _, f := range templates {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range action.FindAllString(string(b), -1) {
			if strings.HasPrefix(strings.TrimLeft(a, "{- "), "/*") {
				continue
			}
			if m := nondeterministic.FindString(a); m != "" {
				t.Errorf("%s: %q uses %s, which renders differently each time or per cluster", filepath.Base(f), a, m)
			}
		}
	}
}

// TestDefaults checks what `helm install` with no values gives a user.
func TestDefaults(t *testing.T) {
	objs := render(t, defaultRender())

	dep := &appsv1.Deployment{}
	fromUnstructured(t, mustFind(t, objs, "Deployment", release), dep)
	pod := dep.Spec.Template.Spec
	if pod.ServiceAccountName != release {
		t.Errorf("serviceAccountName = %q, want %q", pod.ServiceAccountName, release)
	}
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
		t.Errorf("pod securityContext does not require a non-root user: %+v", pod.SecurityContext)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(pod.Containers))
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container securityContext is not locked down: %+v", sc)
	}
	for _, want := range []string{
		"--leader-elect",
		"--external-url=http://linkmesh-operator.linkmesh-system.svc:4320",
		"--health-probe-bind-address=:8081",
		"--metrics-bind-address=:8080",
	} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("args %q lack %q", c.Args, want)
		}
	}
	if c.LivenessProbe == nil || c.ReadinessProbe == nil {
		t.Errorf("want liveness and readiness probes, got %+v / %+v", c.LivenessProbe, c.ReadinessProbe)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("want CPU requests and a memory limit, got %+v", c.Resources)
	}
	if want := "ghcr.io/linkmesh/linkmesh-operator:" + appVersion(t); c.Image != want {
		t.Errorf("image = %q, want %q (the chart's appVersion)", c.Image, want)
	}
	limit := false
	for _, e := range c.Env {
		if e.Name == "LINKMESH_MEMORY_LIMIT" && e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil &&
			e.ValueFrom.ResourceFieldRef.Resource == "limits.memory" {
			limit = true
		}
	}
	if !limit {
		t.Errorf("env %+v lacks LINKMESH_MEMORY_LIMIT from limits.memory: the Go runtime would not know the pod's limit", c.Env)
	}
	if len(pod.TopologySpreadConstraints) != 0 || find(objs, "PodDisruptionBudget", release) != nil {
		t.Errorf("one replica renders a spread %+v or a PodDisruptionBudget", pod.TopologySpreadConstraints)
	}

	svc := &corev1.Service{}
	fromUnstructured(t, mustFind(t, objs, "Service", release), svc)
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 4320 || svc.Spec.Ports[0].TargetPort.String() != "opamp" {
		t.Errorf("Service %s ports = %+v, want 4320 -> opamp", release, svc.Spec.Ports)
	}
	mustFind(t, objs, "Service", release+"-metrics")

	for _, name := range []string{"managedcollectors.collectors.linkmesh.io", "enrollmenttokens.collectors.linkmesh.io"} {
		crd := mustFind(t, objs, "CustomResourceDefinition", name)
		if got := crd.GetAnnotations()["helm.sh/resource-policy"]; got != "keep" {
			t.Errorf("CRD %s: helm.sh/resource-policy = %q, want keep so helm uninstall leaves every custom resource", name, got)
		}
	}
	for _, kind := range []string{"Ingress", "ServiceMonitor", "PrometheusRule", "Certificate", "Namespace", "Secret"} {
		for _, o := range objs {
			if o.GetKind() == kind {
				t.Errorf("the defaults render %s, which should be opt-in (or, for a Secret, never generated)", key(o))
			}
		}
	}
}

// TestValues checks that the values a user sets land where they should.
func TestValues(t *testing.T) {
	t.Run("crds.enabled=false", func(t *testing.T) {
		for _, o := range render(t, renderOpts{release: release, namespace: namespace, set: []string{"crds.enabled=false"}}) {
			if o.GetKind() == "CustomResourceDefinition" {
				t.Errorf("crds.enabled=false still renders %s", key(o))
			}
		}
	})
	t.Run("crds.keep=false", func(t *testing.T) {
		crd := mustFind(t, render(t, renderOpts{release: release, namespace: namespace, set: []string{"crds.keep=false"}}),
			"CustomResourceDefinition", "managedcollectors.collectors.linkmesh.io")
		if _, ok := crd.GetAnnotations()["helm.sh/resource-policy"]; ok {
			t.Error("crds.keep=false still annotates the CRD with helm.sh/resource-policy")
		}
	})
	t.Run("another release name", func(t *testing.T) {
		objs := render(t, renderOpts{release: "lm", namespace: "observability"})
		dep := &appsv1.Deployment{}
		fromUnstructured(t, mustFind(t, objs, "Deployment", "lm-linkmesh-operator"), dep)
		if !slices.Contains(dep.Spec.Template.Spec.Containers[0].Args, "--external-url=http://lm-linkmesh-operator.observability.svc:4320") {
			t.Errorf("the external URL does not follow the Service: %q", dep.Spec.Template.Spec.Containers[0].Args)
		}
		mustFind(t, objs, "Service", "lm-linkmesh-operator")
	})
	t.Run("TLS from an existing Secret", func(t *testing.T) {
		objs := render(t, renderOpts{release: release, namespace: namespace, set: []string{"tls.enabled=true", "tls.secretName=my-tls"}})
		dep := &appsv1.Deployment{}
		fromUnstructured(t, mustFind(t, objs, "Deployment", release), dep)
		pod := dep.Spec.Template.Spec
		args := pod.Containers[0].Args
		for _, want := range []string{"--external-url=https://linkmesh-operator.linkmesh-system.svc:4320", "--tls-cert-file=/etc/linkmesh/tls/tls.crt", "--tls-key-file=/etc/linkmesh/tls/tls.key"} {
			if !slices.Contains(args, want) {
				t.Errorf("args %q lack %q", args, want)
			}
		}
		if len(pod.Volumes) != 1 || pod.Volumes[0].Secret == nil || pod.Volumes[0].Secret.SecretName != "my-tls" {
			t.Errorf("volumes = %+v, want the Secret my-tls", pod.Volumes)
		}
		if find(objs, "Certificate", release) != nil {
			t.Error("TLS from an existing Secret also renders a cert-manager Certificate")
		}
	})
	t.Run("TLS from cert-manager", func(t *testing.T) {
		objs := render(t, renderOpts{release: release, namespace: namespace, set: []string{
			"tls.enabled=true", "tls.certManager.enabled=true", "tls.certManager.issuerRef.name=ca", "tls.certManager.dnsNames={linkmesh.example.com}",
		}})
		cert := mustFind(t, objs, "Certificate", release)
		secret, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName")
		names, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
		if secret != release+"-tls" || !slices.Contains(names, "linkmesh-operator.linkmesh-system.svc") || !slices.Contains(names, "linkmesh.example.com") {
			t.Errorf("Certificate secretName %q, dnsNames %q", secret, names)
		}
	})
	t.Run("host network on loopback", func(t *testing.T) {
		objs := render(t, renderOpts{release: release, namespace: namespace, set: []string{
			"hostNetwork=true", "bindAddress=127.0.0.1", "opamp.containerPort=14320", "metrics.port=18080", "probePort=18081",
		}})
		dep := &appsv1.Deployment{}
		fromUnstructured(t, mustFind(t, objs, "Deployment", release), dep)
		pod := dep.Spec.Template.Spec
		if !pod.HostNetwork || pod.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
			t.Errorf("hostNetwork %v, dnsPolicy %q; want true, ClusterFirstWithHostNet", pod.HostNetwork, pod.DNSPolicy)
		}
		args := pod.Containers[0].Args
		for _, want := range []string{"--opamp-bind-address=127.0.0.1:14320", "--metrics-bind-address=127.0.0.1:18080", "--health-probe-bind-address=127.0.0.1:18081"} {
			if !slices.Contains(args, want) {
				t.Errorf("args %q lack %q", args, want)
			}
		}
	})
	t.Run("two replicas", func(t *testing.T) {
		objs := render(t, renderOpts{release: release, namespace: namespace, set: []string{"replicaCount=2"}})
		dep := &appsv1.Deployment{}
		fromUnstructured(t, mustFind(t, objs, "Deployment", release), dep)
		if *dep.Spec.Replicas != 2 || !slices.Contains(dep.Spec.Template.Spec.Containers[0].Args, "--leader-elect") {
			t.Errorf("replicas %d, args %q: want 2 with --leader-elect", *dep.Spec.Replicas, dep.Spec.Template.Spec.Containers[0].Args)
		}
		spread := dep.Spec.Template.Spec.TopologySpreadConstraints
		if len(spread) != 1 || spread[0].TopologyKey != "kubernetes.io/hostname" || spread[0].MaxSkew != 1 ||
			spread[0].LabelSelector == nil || spread[0].LabelSelector.MatchLabels["app.kubernetes.io/name"] != "linkmesh-operator" {
			t.Errorf("topologySpreadConstraints = %+v, want the replicas spread across nodes", spread)
		}
		pdb := &policyv1.PodDisruptionBudget{}
		fromUnstructured(t, mustFind(t, objs, "PodDisruptionBudget", release), pdb)
		if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 ||
			pdb.Spec.Selector.MatchLabels["app.kubernetes.io/name"] != "linkmesh-operator" {
			t.Errorf("PodDisruptionBudget spec = %+v, want maxUnavailable 1 over the operator's pods", pdb.Spec)
		}
		// A user's own constraints replace the default; the budget can be turned off.
		objs = render(t, renderOpts{release: release, namespace: namespace, set: []string{"replicaCount=3",
			"topologySpreadConstraints[0].maxSkew=1", "topologySpreadConstraints[0].topologyKey=topology.kubernetes.io/zone",
			"topologySpreadConstraints[0].whenUnsatisfiable=DoNotSchedule", "podDisruptionBudget.enabled=false"}})
		fromUnstructured(t, mustFind(t, objs, "Deployment", release), dep)
		if spread := dep.Spec.Template.Spec.TopologySpreadConstraints; len(spread) != 1 || spread[0].TopologyKey != "topology.kubernetes.io/zone" {
			t.Errorf("topologySpreadConstraints = %+v, want only the user's", spread)
		}
		if find(objs, "PodDisruptionBudget", release) != nil {
			t.Error("podDisruptionBudget.enabled=false still renders one")
		}
	})
	t.Run("replicas without leader election are refused", func(t *testing.T) {
		o := renderOpts{release: release, namespace: namespace, set: []string{"replicaCount=2", "leaderElection.enabled=false"}}
		if _, err := runHelm(t, o.args()...); err == nil || !strings.Contains(err.Error(), "leaderElection.enabled") {
			t.Errorf("want a refusal naming leaderElection.enabled, got %v", err)
		}
	})
	t.Run("a misspelt value is refused", func(t *testing.T) {
		o := renderOpts{release: release, namespace: namespace, set: []string{"replicas=2"}}
		if _, err := runHelm(t, o.args()...); err == nil || !strings.Contains(err.Error(), "replicas") {
			t.Errorf("want values.schema.json to refuse replicas, got %v", err)
		}
	})
}

func fromUnstructured(t *testing.T, u *unstructured.Unstructured, into any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into); err != nil {
		t.Fatalf("converting %s: %v", key(u), err)
	}
}

func appVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(b, &chart); err != nil || chart.AppVersion == "" {
		t.Fatalf("Chart.yaml: no appVersion (%v)", err)
	}
	return chart.AppVersion
}
