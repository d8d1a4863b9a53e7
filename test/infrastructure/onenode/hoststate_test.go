package onenode

import (
	"slices"
	"testing"
)

func TestUndoRulesRemovesOnlyWhatAppeared(t *testing.T) {
	before := []string{
		"-P INPUT ACCEPT", "-P OUTPUT ACCEPT",
		"-N USER-CHAIN",
		"-A INPUT -j USER-CHAIN",
	}
	// What the kubelet leaves in the filter table, as `iptables -S` prints it.
	after := []string{
		"-P INPUT ACCEPT", "-P OUTPUT ACCEPT",
		"-N KUBE-FIREWALL", "-N KUBE-KUBELET-CANARY", "-N USER-CHAIN",
		"-A INPUT -j KUBE-FIREWALL",
		"-A INPUT -j USER-CHAIN",
		"-A OUTPUT -j KUBE-FIREWALL",
		`-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP`,
	}
	want := []string{
		"-D OUTPUT -j KUBE-FIREWALL",
		"-D INPUT -j KUBE-FIREWALL",
		"-F KUBE-FIREWALL", "-F KUBE-KUBELET-CANARY",
		"-X KUBE-FIREWALL", "-X KUBE-KUBELET-CANARY",
	}
	if got := undoRules(before, after); !slices.Equal(got, want) {
		t.Errorf("undoRules:\n got %q\nwant %q", got, want)
	}
	if got := undoRules(after, after); len(got) != 0 {
		t.Errorf("nothing changed, yet undoRules = %q", got)
	}
}

func TestNewItemsCountsDuplicates(t *testing.T) {
	// The same mount point twice (a mount over a mount) is two mounts to undo.
	got := newItems([]string{"/", "/run"}, []string{"/", "/run", "/run/x", "/run/x"})
	if want := []string{"/run/x", "/run/x"}; !slices.Equal(got, want) {
		t.Errorf("newItems = %q, want %q", got, want)
	}
}

func TestWithin(t *testing.T) {
	for _, c := range []struct {
		path, root string
		want       bool
	}{
		{"/run/containerd", "/run/containerd", true},
		{"/run/containerd/s/abc", "/run/containerd", true},
		{"/run/containerd-other", "/run/containerd", false},
		{"/run", "/run/containerd", false},
	} {
		if got := within(c.path, c.root); got != c.want {
			t.Errorf("within(%q, %q) = %v", c.path, c.root, got)
		}
	}
}
