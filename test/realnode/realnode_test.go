//go:build realnode

package realnode

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/collectorconfig"
	"github.com/linkmesh/linkmesh-operator/internal/manifests"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
	"github.com/linkmesh/linkmesh-operator/test/framework/otlptest"
	"github.com/linkmesh/linkmesh-operator/test/framework/testenv"
	"github.com/linkmesh/linkmesh-operator/test/infrastructure/onenode"
)

const (
	operatorNamespace = "linkmesh-system"
	release           = "linkmesh-operator"
	namespace         = "realnode"
	collectorName     = "node-agents"
	// collectorExe is where hack/images.sh puts the collector in the agent image.
	collectorExe = "/otelcol"

	// Every wait is bounded far below the suite's -timeout, so a failure tears the cluster down.
	timeout  = 2 * time.Minute
	interval = 100 * time.Millisecond
)

// suite is the state the ordered steps hand on to each other.
type suite struct {
	opampPort, metricsPort, probePort int
	sink                              *otlptest.Sink
	// port is the collector's current OTLP/HTTP port on the host network.
	port int
	// instanceUID is the one agent's, kept across its pods by the hostPath storage.
	instanceUID string
}

// TestRealNode runs the user's path in order; a step that fails stops the ones that build on it.
func TestRealNode(t *testing.T) {
	if skip != "" {
		t.Skip(skip)
	}
	s := &suite{sink: otlptest.NewSink(t)}
	t.Cleanup(func() {
		if t.Failed() {
			s.dumpLogs(t)
		}
	})
	for _, step := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"1 helm install: the operator runs with the chart's RBAC", s.helmInstall},
		{"2 a DaemonSet ManagedCollector connects and applies its config", s.applyCollector},
		{"3 an edited config runs in the pod", s.editConfig},
		{"4 a deleted pod comes back as the same agent", s.deletePod},
		{"5 a terminated pod stops its collector gracefully and leaves no process", s.terminatePod},
		{"6 deleting the ManagedCollector removes its pods and its agent", s.deleteCollector},
		{"7 helm uninstall keeps the CRDs", s.uninstall},
	} {
		if !t.Run(step.name, step.run) {
			t.FailNow()
		}
	}
}

func (s *suite) helmInstall(t *testing.T) {
	g := NewWithT(t)
	ports := freePorts(t, 3)
	s.opampPort, s.metricsPort, s.probePort = ports[0], ports[1], ports[2]
	repo, tag, _ := strings.Cut(images["operator"], ":")
	values := map[string]any{
		"image":      map[string]any{"repository": repo, "tag": tag, "pullPolicy": "Never"},
		"agentImage": images["agent"],
		// No kube-proxy and no DNS: the operator and its collectors meet on the node's loopback.
		"hostNetwork": true,
		"bindAddress": "127.0.0.1",
		"externalURL": fmt.Sprintf("http://127.0.0.1:%d", s.opampPort),
		"opamp":       map[string]any{"containerPort": s.opampPort},
		"metrics":     map[string]any{"port": s.metricsPort},
		"probePort":   s.probePort,
		// The kubernetes Service's ClusterIP leads nowhere without kube-proxy; the API server is on loopback.
		"extraEnv": []map[string]string{
			{"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"},
			{"name": "KUBERNETES_SERVICE_PORT", "value": strconv.Itoa(cluster.APIPort)},
		},
	}
	b, err := yaml.Marshal(values)
	g.Expect(err).NotTo(HaveOccurred())
	valuesFile := filepath.Join(t.TempDir(), "values.yaml")
	g.Expect(os.WriteFile(valuesFile, b, 0o600)).To(Succeed())

	start := time.Now()
	helm(t, "install", release, filepath.Join(testenv.RepoRoot(), "charts", "linkmesh-operator"),
		"--namespace", operatorNamespace, "--create-namespace", "--values", valuesFile, "--wait", "--timeout", "3m")
	t.Logf("MEASURE helm install -> operator Ready: %s", time.Since(start).Round(time.Millisecond))

	dep := &appsv1.Deployment{}
	g.Expect(k8s.Get(ctx(t), types.NamespacedName{Namespace: operatorNamespace, Name: release}, dep)).To(Succeed())
	g.Expect(dep.Status.ReadyReplicas).To(Equal(int32(1)))
	pods := podsOf(g, operatorNamespace, dep.Spec.Selector.MatchLabels)
	g.Expect(pods).To(HaveLen(1))
	pod := pods[0]
	g.Expect(pod.Spec.ServiceAccountName).To(Equal(release))
	g.Expect(pod.Spec.HostNetwork).To(BeTrue())
	g.Expect(pod.Spec.Containers[0].Image).To(Equal(images["operator"]))
	g.Expect(podReady(&pod)).To(BeTrue())

	// The operator's identity is the chart's ServiceAccount, and the API server's RBAC authorizer gives it
	// what the chart grants and nothing more.
	sa := "system:serviceaccount:" + operatorNamespace + ":" + release
	for _, c := range []struct {
		attrs   authorizationv1.ResourceAttributes
		allowed bool
	}{
		{authorizationv1.ResourceAttributes{Namespace: namespace, Verb: "patch", Group: "apps", Resource: "daemonsets"}, true},
		{authorizationv1.ResourceAttributes{Namespace: namespace, Verb: "update", Group: v1alpha1.GroupVersion.Group, Resource: "managedcollectors", Subresource: "status"}, true},
		{authorizationv1.ResourceAttributes{Namespace: operatorNamespace, Verb: "update", Group: "coordination.k8s.io", Resource: "leases"}, true},
		{authorizationv1.ResourceAttributes{Namespace: namespace, Verb: "create", Resource: "pods"}, false},
		{authorizationv1.ResourceAttributes{Verb: "create", Group: "rbac.authorization.k8s.io", Resource: "clusterrolebindings"}, false},
		{authorizationv1.ResourceAttributes{Verb: "delete", Resource: "nodes"}, false},
	} {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: sa, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + operatorNamespace},
			ResourceAttributes: &c.attrs,
		}}
		g.Expect(k8s.Create(ctx(t), sar)).To(Succeed())
		g.Expect(sar.Status.Allowed).To(Equal(c.allowed), "%s may %s %s/%s in %q", sa, c.attrs.Verb, c.attrs.Resource, c.attrs.Subresource, c.attrs.Namespace)
	}
}

func (s *suite) applyCollector(t *testing.T) {
	g := NewWithT(t)
	g.Expect(k8s.Create(ctx(t), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}})).To(Succeed())
	s.port = freePorts(t, 1)[0]
	start := time.Now()
	g.Expect(k8s.Create(ctx(t), &v1alpha1.ManagedCollector{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: collectorName},
		Spec: v1alpha1.ManagedCollectorSpec{
			Mode:   v1alpha1.ModeDaemonSet,
			Config: otlptest.Pipeline(s.port, s.sink.URL, ""),
			// The collector's receiver must be reachable from the test, which is on the host.
			HostNetwork:     true,
			ImagePullPolicy: corev1.PullNever,
			Images:          v1alpha1.ImagesSpec{CollectorExecutable: collectorExe},
		},
	})).To(Succeed())

	// What a user or a pipeline waits with: kubectl wait reads the Ready condition.
	wait := exec.Command(kubectlBin, "--kubeconfig", cluster.Kubeconfig, "wait", "--for=condition=Ready",
		"managedcollector/"+collectorName, "-n", namespace, "--timeout=3m")
	out, err := wait.CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), "kubectl wait: %s", out)
	g.Expect(string(out)).To(ContainSubstring("condition met"))
	t.Logf("MEASURE ManagedCollector applied -> kubectl wait --for=condition=Ready returns: %s", time.Since(start).Round(time.Millisecond))
	wide, err := exec.Command(kubectlBin, "--kubeconfig", cluster.Kubeconfig, "get", "mc", "-n", namespace, "-o", "wide").CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), "%s", wide)
	t.Logf("kubectl get mc -o wide:\n%s", wide)

	var agent v1alpha1.AgentStatus
	g.Eventually(func(g Gomega) {
		mc := getCollector(g)
		g.Expect(cond(mc, v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue), "%+v", mc.Status.Conditions)
		g.Expect(mc.Status.Connected).To(Equal("1/1"))
		g.Expect(mc.Status.Agents).To(HaveLen(1))
		agent = mc.Status.Agents[0]
	}, timeout, interval).Should(Succeed())
	t.Logf("MEASURE ManagedCollector applied -> Ready (pod scheduled, started, supervisor connected, config applied): %s",
		time.Since(start).Round(time.Millisecond))

	pod := collectorPod(g)
	g.Expect(agent.PodName).To(Equal(pod.Name))
	g.Expect(agent.NodeName).To(Equal(onenode.NodeName))
	g.Expect(agent.ConfigStatus).To(Equal(v1alpha1.ConfigStatusApplied))
	g.Expect(agent.Healthy).To(BeTrue())
	s.instanceUID = agent.InstanceUID
	g.Eventually(func(g Gomega) {
		g.Expect(eventReasons(g)).To(ContainElements(v1alpha1.EventRegistered, v1alpha1.EventConfigApplied))
	}, timeout, interval).Should(Succeed())
	s.expectExported(g, s.port)
}

func (s *suite) editConfig(t *testing.T) {
	g := NewWithT(t)
	old := s.port
	s.port = freePorts(t, 1)[0]
	config := otlptest.Pipeline(s.port, s.sink.URL, "")
	mc := getCollector(g)
	mc.Spec.Config = config
	start := time.Now()
	g.Expect(k8s.Update(ctx(t), mc)).To(Succeed())
	g.Eventually(func(g Gomega) {
		mc := getCollector(g)
		g.Expect(mc.Status.ConfigHash).To(Equal(collectorconfig.Hash(config)))
		g.Expect(cond(mc, v1alpha1.ConditionConfigApplied).Status).To(Equal(metav1.ConditionTrue))
		g.Expect(mc.Status.Agents).To(HaveLen(1))
		g.Expect(mc.Status.Agents[0].ConfigHash).To(Equal(mc.Status.ConfigHash))
	}, timeout, interval).Should(Succeed())
	t.Logf("MEASURE spec.config edited -> ConfigApplied: %s", time.Since(start).Round(time.Millisecond))
	s.expectExported(g, s.port)
	g.Eventually(func() error { return otlptest.SendSpan(old) }, timeout, interval).Should(HaveOccurred(),
		"the old pipeline's receiver still answers")
}

func (s *suite) deletePod(t *testing.T) {
	g := NewWithT(t)
	old := collectorPod(g)
	start := time.Now()
	ended := untilGone(t, old, func() { g.Expect(k8s.Delete(ctx(t), &old)).To(Succeed()) })
	expectGracefulExit(g, ended)
	s.expectReplaced(g, old.UID)
	t.Logf("MEASURE pod deleted -> the same agent reconnected from its replacement: %s", time.Since(start).Round(time.Millisecond))
}

// terminatePod has the DaemonSet controller terminate the pod by moving the ManagedCollector off the node, so
// that no replacement starts: the collector's log in the hostPath storage keeps its last words (a new
// supervisor truncates it), and any collector process left on the host is an orphan.
func (s *suite) terminatePod(t *testing.T) {
	g := NewWithT(t)
	old := collectorPod(g)
	agentLog := filepath.Join(manifests.HostStorageRoot, namespace, collectorName, "agent.log")
	shutdowns := func() int {
		b, _ := os.ReadFile(agentLog)
		return strings.Count(string(b), "Shutdown complete.")
	}
	before := shutdowns()
	setNodeSelector := func(sel map[string]string) {
		mc := getCollector(g)
		mc.Spec.NodeSelector = sel
		g.Expect(k8s.Update(ctx(t), mc)).To(Succeed())
	}

	start := time.Now()
	ended := untilGone(t, old, func() { setNodeSelector(map[string]string{"linkmesh.io/realnode-test": "no-such-node"}) })
	t.Logf("MEASURE pod terminated -> gone (terminationGracePeriodSeconds %d): %s",
		*old.Spec.TerminationGracePeriodSeconds, time.Since(start).Round(time.Millisecond))
	expectGracefulExit(g, ended)
	g.Expect(shutdowns()).To(BeNumerically(">", before), "the collector did not log a graceful shutdown in %s", agentLog)
	g.Eventually(func(g Gomega) {
		for _, exe := range []string{collectorExe, manifests.SupervisorPath, manifests.AgentInitPath} {
			g.Expect(onenode.Processes(exe)).To(BeEmpty(), "%s outlived its pod", exe)
		}
		g.Expect(getCollector(g).Status.Counts.Connected).To(BeZero())
	}, timeout, interval).Should(Succeed())

	setNodeSelector(nil)
	s.expectReplaced(g, old.UID)
}

// untilGone runs action, which should delete pod, and waits until the pod is gone; it returns the container's
// terminated state, which the kubelet reports before it removes the pod.
func untilGone(t *testing.T, pod corev1.Pod, action func()) *corev1.ContainerStateTerminated {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	w, err := cs.CoreV1().Pods(pod.Namespace).Watch(ctx(t), metav1.ListOptions{
		FieldSelector: "metadata.name=" + pod.Name, ResourceVersion: pod.ResourceVersion,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	action()
	var ended *corev1.ContainerStateTerminated
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatalf("the watch of pod %s ended before the pod was deleted", pod.Name)
			}
			if p, ok := ev.Object.(*corev1.Pod); ok {
				for _, st := range p.Status.ContainerStatuses {
					if st.State.Terminated != nil {
						ended = st.State.Terminated
					}
				}
			}
			if ev.Type == watch.Deleted {
				return ended
			}
		case <-deadline:
			t.Fatalf("pod %s still exists %s after its deletion", pod.Name, timeout)
		}
	}
}

// expectGracefulExit: exit code 0 is the supervisor's own after the SIGINT that linkmesh-agent-init turns
// the kubelet's SIGTERM into; a kill at the end of the grace period would give 137.
func expectGracefulExit(g Gomega, ended *corev1.ContainerStateTerminated) {
	g.Expect(ended).NotTo(BeNil(), "the kubelet reported no terminated state")
	g.Expect(ended.ExitCode).To(BeZero(), "the supervisor container ended with %d (%s)", ended.ExitCode, ended.Reason)
}

func (s *suite) deleteCollector(t *testing.T) {
	g := NewWithT(t)
	series := fmt.Sprintf(`linkmesh_collector_agents{name=%q,namespace=%q,state="connected"}`, collectorName, namespace)
	g.Expect(s.metrics(g)).To(ContainSubstring(series + " 1"))
	start := time.Now()
	g.Expect(k8s.Delete(ctx(t), getCollector(g))).To(Succeed())
	g.Eventually(func(g Gomega) {
		err := k8s.Get(ctx(t), types.NamespacedName{Namespace: namespace, Name: naming.DaemonSet(collectorName)}, &appsv1.DaemonSet{})
		g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "DaemonSet: %v", err)
		g.Expect(podsOf(g, namespace, naming.SelectorLabels(collectorName))).To(BeEmpty())
		g.Expect(onenode.Processes(collectorExe)).To(BeEmpty())
		g.Expect(onenode.Processes(manifests.SupervisorPath)).To(BeEmpty())
	}, timeout, interval).Should(Succeed())
	t.Logf("MEASURE ManagedCollector deleted -> DaemonSet, pods and processes gone: %s", time.Since(start).Round(time.Millisecond))
	g.Eventually(func(g Gomega) {
		g.Expect(s.metrics(g)).NotTo(ContainSubstring(fmt.Sprintf(`name=%q`, collectorName)))
	}, timeout, interval).Should(Succeed(), "the operator still counts the deleted ManagedCollector's agent")
}

func (s *suite) uninstall(t *testing.T) {
	g := NewWithT(t)
	helm(t, "uninstall", release, "--namespace", operatorNamespace, "--wait", "--timeout", "2m")
	g.Eventually(func(g Gomega) {
		err := k8s.Get(ctx(t), types.NamespacedName{Namespace: operatorNamespace, Name: release}, &appsv1.Deployment{})
		g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "Deployment: %v", err)
		g.Expect(podsOf(g, operatorNamespace, map[string]string{"app.kubernetes.io/instance": release})).To(BeEmpty())
	}, timeout, interval).Should(Succeed())
	for _, crd := range []string{"managedcollectors", "enrollmenttokens"} {
		g.Expect(k8s.Get(ctx(t), types.NamespacedName{Name: crd + "." + v1alpha1.GroupVersion.Group}, &apiextensionsv1.CustomResourceDefinition{})).
			To(Succeed(), "helm uninstall removed the %s CRD", crd)
	}
	g.Expect(k8s.List(ctx(t), &v1alpha1.ManagedCollectorList{})).To(Succeed())
}

// expectExported sends spans to the collector's receiver on port until one reaches the sink.
func (s *suite) expectExported(g Gomega, port int) {
	before := s.sink.Traces()
	g.Eventually(func(g Gomega) {
		g.Expect(otlptest.SendSpan(port)).To(Succeed())
		g.Expect(s.sink.Traces()).To(BeNumerically(">", before))
	}, timeout, interval).Should(Succeed())
}

// expectReplaced waits for the DaemonSet's replacement of the pod with UID old to run the same agent, with
// no second agent in status.
func (s *suite) expectReplaced(g Gomega, old types.UID) {
	g.Eventually(func(g Gomega) {
		pods := podsOf(g, namespace, naming.SelectorLabels(collectorName))
		g.Expect(pods).To(HaveLen(1))
		pod := pods[0]
		g.Expect(pod.UID).NotTo(Equal(old))
		g.Expect(podReady(&pod)).To(BeTrue())
		mc := getCollector(g)
		g.Expect(mc.Status.Connected).To(Equal("1/1"))
		g.Expect(mc.Status.Agents).To(HaveLen(1))
		a := mc.Status.Agents[0]
		g.Expect(a.InstanceUID).To(Equal(s.instanceUID))
		g.Expect(a.PodName).To(Equal(pod.Name))
		g.Expect(a.Connected).To(BeTrue())
		g.Expect(cond(mc, v1alpha1.ConditionReady).Status).To(Equal(metav1.ConditionTrue))
	}, timeout, interval).Should(Succeed())
}

// metrics scrapes the operator's Prometheus endpoint on the node.
func (s *suite) metrics(g Gomega) string {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", s.metricsPort))
	g.Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	return string(b)
}

func (s *suite) dumpLogs(t *testing.T) {
	for _, c := range []string{"kubelet", "containerd", "kube-controller-manager"} {
		t.Logf("%s log:\n%s", c, cluster.LogTail(c, 4000))
	}
	for _, ns := range []string{operatorNamespace, namespace} {
		list := &corev1.PodList{}
		if err := k8s.List(context.Background(), list, client.InNamespace(ns)); err != nil {
			continue
		}
		for _, p := range list.Items {
			t.Logf("pod %s/%s phase %s statuses %+v", ns, p.Name, p.Status.Phase, p.Status.ContainerStatuses)
			t.Logf("logs of %s/%s:\n%s", ns, p.Name, cluster.PodLogTail(ns, p.Name, 6000))
		}
	}
	if b, err := os.ReadFile(filepath.Join(manifests.HostStorageRoot, namespace, collectorName, "agent.log")); err == nil {
		t.Logf("collector log:\n%s", tail(b, 4000))
	}
}

func helm(t *testing.T, args ...string) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(helmBin, append(args, "--kubeconfig", cluster.Kubeconfig)...)
	// helm's caches and config stay out of the user's home.
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func ctx(t *testing.T) context.Context { return t.Context() }

func getCollector(g Gomega) *v1alpha1.ManagedCollector {
	mc := &v1alpha1.ManagedCollector{}
	g.Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: namespace, Name: collectorName}, mc)).To(Succeed())
	return mc
}

// collectorPod is the DaemonSet's one pod, once it runs.
func collectorPod(g Gomega) corev1.Pod {
	pods := podsOf(g, namespace, naming.SelectorLabels(collectorName))
	g.Expect(pods).To(HaveLen(1))
	return pods[0]
}

func podsOf(g Gomega, ns string, labels map[string]string) []corev1.Pod {
	list := &corev1.PodList{}
	g.Expect(k8s.List(context.Background(), list, client.InNamespace(ns), client.MatchingLabels(labels))).To(Succeed())
	return list.Items
}

func podReady(p *corev1.Pod) bool {
	return slices.ContainsFunc(p.Status.Conditions, func(c corev1.PodCondition) bool {
		return c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue
	})
}

func cond(mc *v1alpha1.ManagedCollector, t string) metav1.Condition {
	if c := apimeta.FindStatusCondition(mc.Status.Conditions, t); c != nil {
		return *c
	}
	return metav1.Condition{}
}

func eventReasons(g Gomega) []string {
	list := &eventsv1.EventList{}
	g.Expect(k8s.List(context.Background(), list, client.InNamespace(namespace))).To(Succeed())
	var out []string
	for _, e := range list.Items {
		if e.Regarding.Name == collectorName {
			out = append(out, e.Reason)
		}
	}
	return out
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

func tail(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	return b[len(b)-n:]
}
