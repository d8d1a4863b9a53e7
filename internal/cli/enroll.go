package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/downloads"
	"github.com/linkmesh/linkmesh-operator/internal/endpoint"
	"github.com/linkmesh/linkmesh-operator/internal/manifests"
)

// EnrollOptions say which EnrollmentToken to mint and what the host's install line carries.
type EnrollOptions struct {
	// Namespace and Collector name the ManagedCollector the host joins.
	Namespace, Collector string
	// Name of the EnrollmentToken; empty lets the API server generate one from the collector's name.
	Name string
	// TTL is spec.ttl; zero leaves the operator's default of 15m.
	TTL time.Duration
	// Description is spec.description, for example the host the token is for.
	Description string
	// Environment is the host's linkmesh.environment, passed to the installer as --environment.
	Environment string
	// Mirror makes the installer download from the operator's mirror only (--mirror).
	Mirror bool
	// SupervisorVersion is the opampsupervisor release the host gets (--supervisor-version); empty leaves
	// the installer's default, manifests.DefaultHostSupervisorVersion.
	SupervisorVersion string
	// Timeout bounds the wait for the operator to mint the token; zero means 30s.
	Timeout time.Duration
}

// Enrollment is a minted EnrollmentToken and how a host uses it. Token and Command hold the secret.
type Enrollment struct {
	// EnrollmentToken as the operator last wrote it.
	EnrollmentToken *v1alpha1.EnrollmentToken
	// Collector is the ManagedCollector the host joins.
	Collector *v1alpha1.ManagedCollector
	// Token is the secret from the EnrollmentToken's Secret.
	Token string
	// Server is the operator's URL as hosts reach it, from status.installCommand.
	Server string
	// Command is the product document's one-line install, with the token and the options filled in.
	Command string
	// SupervisorVersion is the release the host gets.
	SupervisorVersion string
	// Environment is the host's linkmesh.environment, empty for none.
	Environment string
}

// SupervisorYAML is the host's pre-filled supervisor.yaml for the manual install: rendered here by the
// builder the operator's /api/v1/downloads/opamp-bootstrap-config.yaml uses, for the same server URL, so
// the bytes are the same without this machine having to reach the URL hosts use (often an in-cluster
// Service or an Ingress only hosts see) or sending the token anywhere but the API server it came from.
func (e *Enrollment) SupervisorYAML() ([]byte, error) {
	opampURL, err := endpoint.OpAMP(e.Server)
	if err != nil {
		return nil, err
	}
	return manifests.HostSupervisorYAML(e.Collector, opampURL, e.Token, e.Environment, e.SupervisorVersion)
}

// defaultEnrollTimeout is how long Enroll waits for the operator to mint a token; it takes milliseconds.
const defaultEnrollTimeout = 30 * time.Second

// Enroll creates an EnrollmentToken for o.Collector, waits for the operator to mint it, and returns it with
// the install line. Bad options are refused before anything is created; a token the operator does not mint
// in time is deleted again.
func Enroll(ctx context.Context, c client.Client, o EnrollOptions) (*Enrollment, error) {
	if err := downloads.CheckEnvironment(o.Environment); err != nil {
		return nil, fmt.Errorf("--environment: %w", err)
	}
	version := cmp.Or(o.SupervisorVersion, manifests.DefaultHostSupervisorVersion)
	if _, err := manifests.ParseSupervisorVersion(version); err != nil {
		return nil, fmt.Errorf("--supervisor-version: %w", err)
	}
	if strings.HasPrefix(o.SupervisorVersion, "v") {
		// The installer, like upstream's release file names, takes the version without the v.
		return nil, fmt.Errorf("--supervisor-version: write %s without the v", o.SupervisorVersion)
	}
	mc := &v1alpha1.ManagedCollector{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: o.Namespace, Name: o.Collector}, mc); err != nil {
		return nil, collectorError(err, o.Namespace, o.Collector)
	}

	et := &v1alpha1.EnrollmentToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: o.Namespace, Name: o.Name},
		Spec: v1alpha1.EnrollmentTokenSpec{
			CollectorRef: v1alpha1.CollectorReference{Name: o.Collector},
			Description:  o.Description,
		},
	}
	if o.Name == "" {
		et.GenerateName = o.Collector + "-"
	}
	if o.TTL != 0 {
		et.Spec.TTL = &metav1.Duration{Duration: o.TTL}
	}
	if err := c.Create(ctx, et); err != nil {
		return nil, fmt.Errorf("creating the EnrollmentToken: %w", err)
	}
	enrollment, err := waitForToken(ctx, c, et, cmp.Or(o.Timeout, defaultEnrollTimeout))
	if err != nil {
		// An unminted token is of no use to anyone; leave nothing behind.
		if delErr := c.Delete(context.WithoutCancel(ctx), et); delErr != nil && !apierrors.IsNotFound(delErr) {
			err = errors.Join(err, fmt.Errorf("deleting enrollmenttoken/%s again: %w", et.Name, delErr))
		}
		return nil, err
	}
	enrollment.Collector = mc
	enrollment.SupervisorVersion = version
	enrollment.Environment = o.Environment

	args := []string{}
	if o.Environment != "" {
		args = append(args, "--environment", o.Environment)
	}
	if o.SupervisorVersion != "" {
		args = append(args, "--supervisor-version", o.SupervisorVersion)
	}
	if o.Mirror {
		args = append(args, "--mirror")
	}
	// The token and every argument are of [A-Za-z0-9._-] only, checked above or by the operator: nothing
	// needs quoting for the host's shell.
	enrollment.Command = strings.Replace(enrollment.EnrollmentToken.Status.InstallCommand, downloads.TokenPlaceholder, enrollment.Token, 1)
	if len(args) > 0 {
		enrollment.Command += " " + strings.Join(args, " ")
	}
	return enrollment, nil
}

// waitForToken waits until the operator has minted et's token into its Secret and says how to use it.
func waitForToken(ctx context.Context, c client.Client, et *v1alpha1.EnrollmentToken, timeout time.Duration) (*Enrollment, error) {
	var result *Enrollment
	var last error
	key := client.ObjectKeyFromObject(et)
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		cur := &v1alpha1.EnrollmentToken{}
		if err := c.Get(ctx, key, cur); err != nil {
			return false, fmt.Errorf("reading enrollmenttoken/%s: %w", key.Name, err)
		}
		if usable := apimeta.FindStatusCondition(cur.Status.Conditions, v1alpha1.ConditionUsable); usable != nil && usable.Status == metav1.ConditionFalse {
			return false, fmt.Errorf("the operator refused enrollmenttoken/%s: %s", key.Name, usable.Message)
		}
		if cur.Status.Phase != v1alpha1.TokenPending || cur.Status.SecretName == "" || cur.Status.InstallCommand == "" {
			last = fmt.Errorf("enrollmenttoken/%s has phase %q and no install command yet", key.Name, cur.Status.Phase)
			return false, nil
		}
		server, err := downloads.ServerOfInstallCommand(cur.Status.InstallCommand)
		if err != nil {
			return false, fmt.Errorf("enrollmenttoken/%s status.installCommand: %w", key.Name, err)
		}
		secret := &corev1.Secret{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: cur.Status.SecretName}, secret); err != nil {
			if apierrors.IsNotFound(err) {
				last = err
				return false, nil
			}
			return false, fmt.Errorf("reading the token's Secret %s: %w", cur.Status.SecretName, err)
		}
		token := string(secret.Data[v1alpha1.TokenSecretKey])
		if token == "" {
			return false, fmt.Errorf("secret %s has no key %q", cur.Status.SecretName, v1alpha1.TokenSecretKey)
		}
		if strings.Trim(token, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != "" {
			// Never print it: it is not a token of this operator, and may be anything.
			return false, fmt.Errorf("secret %s holds something other than an EnrollmentToken under %q", cur.Status.SecretName, v1alpha1.TokenSecretKey)
		}
		result = &Enrollment{EnrollmentToken: cur, Token: token, Server: server}
		return true, nil
	})
	if ctx.Err() != nil {
		return nil, fmt.Errorf("waiting for enrollmenttoken/%s: %w", key.Name, ctx.Err())
	}
	if wait.Interrupted(err) {
		if last == nil {
			last = errors.New("it was never read")
		}
		return nil, fmt.Errorf("the operator did not mint enrollmenttoken/%s within %s: is the LinkMesh operator running? (%w)", key.Name, timeout, last)
	}
	if err != nil {
		return nil, err
	}
	return result, nil
}

// collectorError turns a failed Get of a ManagedCollector into what a user can act on.
func collectorError(err error, ns, name string) error {
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("managedcollector %q not found in namespace %q (kubectl get managedcollectors -n %s lists them)", name, ns, ns)
	}
	return fmt.Errorf("reading managedcollector %q: %w", name, err)
}

func newEnrollCommand(e *env) *cobra.Command {
	var o EnrollOptions
	var output string
	cmd := &cobra.Command{
		Use:   "enroll COLLECTOR",
		Short: "Mint an EnrollmentToken and print the command that installs and enrolls a host",
		Long: `Mint an EnrollmentToken for the ManagedCollector COLLECTOR, wait for the operator to generate its token,
and print the one-line install command with the token filled in. Run it as root on the host: it installs the
upstream opampsupervisor and otelcol-contrib and starts them, and the host joins COLLECTOR.

The token is a secret, printed to standard output only. It can be used once, by one host, until it expires
(--ttl). With -o yaml, the host's pre-filled supervisor.yaml is printed instead, for a manual install.`,
		Example: `  # The install command for a production host, valid for 1 hour
  kubectl linkmesh enroll linux-hosts --name web-01 --ttl 1h --environment production

  # The supervisor.yaml for a host that installs the binaries itself
  kubectl linkmesh enroll linux-hosts -o yaml > supervisor.yaml`,
		Args: exactArgs(1, "COLLECTOR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "" && output != "yaml" {
				return fmt.Errorf("--output %q is not supported: leave it out for the install command, or use yaml", output)
			}
			c, ns, err := e.client()
			if err != nil {
				return err
			}
			o.Namespace, o.Collector = ns, args[0]
			en, err := Enroll(cmd.Context(), c, o)
			if err != nil {
				return err
			}
			return printEnrollment(e, en, output)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Name, "name", "", "Name of the EnrollmentToken (default: generated from COLLECTOR)")
	f.DurationVar(&o.TTL, "ttl", 0, "How long the token can be redeemed, from 1m to 720h (default: the operator's 15m)")
	f.StringVar(&o.Description, "description", "", "What the token is for, for example the host's name")
	f.StringVar(&o.Environment, "environment", "", "The host's linkmesh.environment attribute, for example production")
	f.BoolVar(&o.Mirror, "mirror", false, "Make the installer download the binaries from the operator's mirror only (air-gapped hosts)")
	f.StringVar(&o.SupervisorVersion, "supervisor-version", "", "The opampsupervisor release the host gets (default: the installer's "+manifests.DefaultHostSupervisorVersion+")")
	f.DurationVar(&o.Timeout, "timeout", defaultEnrollTimeout, "How long to wait for the operator to mint the token")
	f.StringVarP(&output, "output", "o", "", "yaml: print the host's supervisor.yaml instead of the install command")
	return cmd
}

// printEnrollment writes the secret to stdout and everything about it to stderr, so that stdout can be
// piped or captured as is.
func printEnrollment(e *env, en *Enrollment, output string) error {
	et := en.EnrollmentToken
	expires := "when it is redeemed"
	if at := et.Status.ExpiresAt; at != nil {
		expires = fmt.Sprintf("at %s (in %s) unless a host redeems it first", at.UTC().Format(time.RFC3339), duration.HumanDuration(at.Sub(e.now())))
	}
	out(e.streams.ErrOut, "enrollmenttoken/%s created for managedcollector/%s; it expires %s.\n", et.Name, et.Spec.CollectorRef.Name, expires)
	if output == "yaml" {
		b, err := en.SupervisorYAML()
		if err != nil {
			return err
		}
		out(e.streams.ErrOut, "Warning: this supervisor.yaml holds the token, a secret. On the host, write it to /etc/otelcol-supervisor/supervisor.yaml with mode 0600.\n")
		out(e.streams.Out, "%s", b)
		return nil
	}
	out(e.streams.ErrOut, "Warning: the command holds the token, a secret. Run it as root on the host (kubectl linkmesh revoke %s ends it).\n", et.Name)
	out(e.streams.Out, "%s\n", en.Command)
	return nil
}

// exactArgs is cobra.ExactArgs with a message that names the argument.
func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return fmt.Errorf("%s takes %s (see %s --help)", cmd.CommandPath(), names, cmd.CommandPath())
		}
		return nil
	}
}
