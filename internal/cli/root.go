// Package cli is kubectl-linkmesh, the kubectl plugin that onboards hosts and shows the fleet: it mints an
// EnrollmentToken and hands out the install line with the token filled in, prints ManagedCollectors and
// their collectors, and lists and revokes tokens. cmd/kubectl-linkmesh wires it to a process; the demo uses
// Enroll directly.
package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
)

// Run runs the plugin with args (without the program name) and returns the process's exit code: 0, or 1
// with the error on stderr as kubectl prints it.
func Run(ctx context.Context, args []string, streams genericiooptions.IOStreams) int {
	cmd := NewCommand(streams)
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(streams.ErrOut, "error:", err)
		return 1
	}
	return 0
}

// env is what every subcommand needs: the kubeconfig flags, the streams and the clock.
type env struct {
	flags   *genericclioptions.ConfigFlags
	streams genericiooptions.IOStreams
	// now is the time ages and expiries are relative to.
	now func() time.Time
}

// client is a client of the cluster the kubeconfig flags select, and the namespace they select.
func (e *env) client() (client.Client, string, error) {
	cfg, err := e.flags.ToRESTConfig()
	if err != nil {
		return nil, "", err
	}
	ns, _, err := e.flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return nil, "", err
	}
	c, err := client.New(cfg, client.Options{Scheme: Scheme()})
	if err != nil {
		return nil, "", fmt.Errorf("connecting to the cluster: %w", err)
	}
	return c, ns, nil
}

// Scheme knows the built-in kinds and the LinkMesh API.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	// Both only register static types; an error would be a programming error caught by every test.
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// NewCommand is `kubectl linkmesh` with its subcommands.
func NewCommand(streams genericiooptions.IOStreams) *cobra.Command {
	e := &env{
		flags:   genericclioptions.NewConfigFlags(true).WithWarningPrinter(streams),
		streams: streams,
		now:     time.Now,
	}
	root := &cobra.Command{
		Use:   "linkmesh",
		Short: "Onboard hosts into LinkMesh ManagedCollectors and watch the fleet",
		Long: `Onboard hosts into LinkMesh ManagedCollectors and watch the fleet.

A ManagedCollector is a group of OpenTelemetry collectors that share one config, each run by the upstream
opampsupervisor. Hosts outside the cluster join one with a single-use, expiring EnrollmentToken: enroll mints
one and prints the command to run on the host.`,
		Example: `  # Mint a token for the ManagedCollector linux-hosts and print the install command for the host
  kubectl linkmesh enroll linux-hosts --environment production

  # The fleet at a glance, then one ManagedCollector with its collectors and events
  kubectl linkmesh status
  kubectl linkmesh status linux-hosts

  # Tokens, and revoking one (its host, if any, is disconnected)
  kubectl linkmesh tokens linux-hosts
  kubectl linkmesh revoke web-01`,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl linkmesh"},
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// kubectl completes plugins through a kubectl_complete-linkmesh script, not a completion subcommand.
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	e.flags.AddFlags(root.PersistentFlags())
	root.AddCommand(newEnrollCommand(e), newStatusCommand(e), newTokensCommand(e), newRevokeCommand(e))
	return root
}

// out writes what a command prints; a failed write to a terminal or pipe leaves nothing to report.
func out(w io.Writer, format string, args ...any) {
	_, _ = fmt.Fprintf(w, format, args...)
}
