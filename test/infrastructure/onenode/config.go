package onenode

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

// The node's configuration files. Every setting below was found necessary on a machine like CI's by the
// failure it avoids, which each comment names.

// containerdConfig is containerd 2's config (version 3). Every path it can be told lives in the work
// directory; only the shim sockets (/run/containerd/s) are fixed.
func containerdConfig(dir, nodeBin, sandboxImage string) string {
	q := strconv.Quote
	return fmt.Sprintf(`version = 3
root = %s
state = %s
# NRI would listen on /var/run/nri; nothing here uses it.
disabled_plugins = ["io.containerd.nri.v1.nri"]

[grpc]
  address = %s

[plugins."io.containerd.internal.v1.opt"]
  path = %s

[plugins."io.containerd.cri.v1.images"]
  # Nothing can be pulled here: the pause image is imported, and must never be garbage-collected.
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = %s

[plugins."io.containerd.cri.v1.runtime"]
  # The sandbox lacks CAP_SYS_RESOURCE: runc otherwise fails writing /proc/self/oom_score_adj.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true

  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = [%s]
    conf_dir = %s

  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
      BinaryName = %s
      Root = %s
`,
		q(filepath.Join(dir, "containerd", "root")), q(filepath.Join(dir, "containerd", "state")),
		q(containerdSocket(dir)), q(filepath.Join(dir, "containerd", "opt")), q(sandboxImage),
		q(filepath.Join(nodeBin, "cni")), q(filepath.Join(dir, "cni", "net.d")),
		q(filepath.Join(nodeBin, "runc")), q(filepath.Join(dir, "containerd", "runc")))
}

func containerdSocket(dir string) string { return filepath.Join(dir, "containerd.sock") }

// cniConfig is a bridge network. The pods here use the host's network, but without any CNI config the
// kubelet reports the node NotReady, and that taint keeps DaemonSet pods off it.
func cniConfig(dir string) ([]byte, error) {
	return json.MarshalIndent(map[string]any{
		"cniVersion": "1.0.0",
		"name":       "onenode",
		"plugins": []any{map[string]any{
			"type":      "bridge",
			"bridge":    "cni0",
			"isGateway": true,
			"ipam": map[string]any{
				"type":    "host-local",
				"ranges":  [][]map[string]string{{{"subnet": "10.244.0.0/24"}}},
				"dataDir": filepath.Join(dir, "cni", "ipam"),
			},
		}},
	}, "", "  ")
}

// kubeletConfig is the kubelet's configuration file.
func kubeletConfig(dir string, port int, caPath, certPath, keyPath string) ([]byte, error) {
	cfg := kubeletv1beta1.KubeletConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: "kubelet.config.k8s.io/v1beta1", Kind: "KubeletConfiguration"},
		// Loopback only, on a port picked for this run; no read-only port, no healthz port.
		Address:      "127.0.0.1",
		Port:         int32(port),
		ReadOnlyPort: 0,
		HealthzPort:  ptr.To[int32](0),
		TLSCertFile:  certPath, TLSPrivateKeyFile: keyPath,
		Authentication: kubeletv1beta1.KubeletAuthentication{
			X509:      kubeletv1beta1.KubeletX509Authentication{ClientCAFile: caPath},
			Webhook:   kubeletv1beta1.KubeletWebhookAuthentication{Enabled: ptr.To(true)},
			Anonymous: kubeletv1beta1.KubeletAnonymousAuthentication{Enabled: ptr.To(false)},
		},
		Authorization: kubeletv1beta1.KubeletAuthorization{Mode: kubeletv1beta1.KubeletAuthorizationModeWebhook},
		// This host has cgroup v1 (hybrid) and no systemd, and swap may be on.
		FailCgroupV1: ptr.To(false),
		CgroupDriver: "cgroupfs",
		FailSwapOn:   ptr.To(false),
		// A busy CI disk must not evict the test's pods or garbage-collect the imported images, which cannot
		// be pulled again.
		EvictionHard: map[string]string{
			"memory.available": "50Mi", "nodefs.available": "1%", "nodefs.inodesFree": "1%", "imagefs.available": "1%",
		},
		ImageGCHighThresholdPercent: ptr.To[int32](100),
		ImageGCLowThresholdPercent:  ptr.To[int32](99),
		ContainerRuntimeEndpoint:    "unix://" + containerdSocket(dir),
		PodLogsDir:                  filepath.Join(dir, "pod-logs"),
		VolumePluginDir:             filepath.Join(dir, "volume-plugins"),
		ProtectKernelDefaults:       false,
		StaticPodPath:               "",
		ClusterDomain:               "cluster.local",
	}
	return yaml.Marshal(cfg)
}
