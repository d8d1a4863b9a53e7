package chart_test

import (
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// TestConsoleValues: the console is on loopback by default (port-forward only, no port declared, no Service),
// exposed it binds the pod network with a Service of its own, and it can be turned off.
func TestConsoleValues(t *testing.T) {
	cases := []struct {
		name    string
		set     []string
		arg     string
		exposed bool
	}{
		{"defaults", nil, "--console-bind-address=127.0.0.1:8082", false},
		{"another port", []string{"console.port=9090"}, "--console-bind-address=127.0.0.1:9090", false},
		{"exposed", []string{"console.expose=true"}, "--console-bind-address=:8082", true},
		{"exposed on a host network's loopback", []string{"console.expose=true", "hostNetwork=true", "bindAddress=127.0.0.1"}, "--console-bind-address=127.0.0.1:8082", true},
		{"off", []string{"console.enabled=false", "console.expose=true"}, "--console-bind-address=0", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			objs := render(t, renderOpts{release: release, namespace: namespace, set: c.set})
			dep := &appsv1.Deployment{}
			fromUnstructured(t, mustFind(t, objs, "Deployment", release), dep)
			ctr := dep.Spec.Template.Spec.Containers[0]
			if !slices.Contains(ctr.Args, c.arg) {
				t.Errorf("args %q lack %q", ctr.Args, c.arg)
			}
			declared := slices.ContainsFunc(ctr.Ports, func(p corev1.ContainerPort) bool { return p.Name == "console" })
			svc := find(objs, "Service", release+"-console")
			if declared != c.exposed || (svc != nil) != c.exposed {
				t.Errorf("console port declared %v, Service %v; want both %v", declared, svc != nil, c.exposed)
			}
			if c.exposed {
				s := &corev1.Service{}
				fromUnstructured(t, svc, s)
				if s.Spec.Type != corev1.ServiceTypeClusterIP || len(s.Spec.Ports) != 1 || s.Spec.Ports[0].TargetPort.String() != "console" {
					t.Errorf("console Service %+v, want ClusterIP to the console port", s.Spec)
				}
			}
			main := &corev1.Service{}
			fromUnstructured(t, mustFind(t, objs, "Service", release), main)
			for _, p := range main.Spec.Ports {
				if p.TargetPort.String() == "console" {
					t.Error("the collectors' Service carries the console")
				}
			}
		})
	}
}
