package cli

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
)

func newTokensCommand(e *env) *cobra.Command {
	var allNamespaces bool
	cmd := &cobra.Command{
		Use:   "tokens [COLLECTOR]",
		Short: "List EnrollmentTokens with their phase, expiry and the host that redeemed them",
		Long: `List the EnrollmentTokens of the namespace, or only those of the ManagedCollector COLLECTOR: phase
(Pending, Redeemed, Expired, Revoked), when a pending one expires and which host redeemed it. The tokens
themselves stay in their Secrets.`,
		Example: `  kubectl linkmesh tokens linux-hosts`,
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := e.client()
			if err != nil {
				return err
			}
			collector := ""
			if len(args) == 1 {
				if allNamespaces {
					return fmt.Errorf("a COLLECTOR is in one namespace: use -n instead of --all-namespaces")
				}
				collector = args[0]
				if err := c.Get(cmd.Context(), types.NamespacedName{Namespace: ns, Name: collector}, &v1alpha1.ManagedCollector{}); err != nil {
					return collectorError(err, ns, collector)
				}
			}
			return listTokens(cmd.Context(), c, e, ns, allNamespaces, collector)
		},
	}
	cmd.Flags().BoolVarP(&allNamespaces, "all-namespaces", "A", false, "List the EnrollmentTokens of every namespace")
	return cmd
}

// tokenColumns show an EnrollmentToken: `kubectl get et` with its host and description.
func tokenColumns(now time.Time) []column[v1alpha1.EnrollmentToken] {
	return []column[v1alpha1.EnrollmentToken]{
		{"NAME", func(et *v1alpha1.EnrollmentToken) string { return et.Name }},
		{"COLLECTOR", func(et *v1alpha1.EnrollmentToken) string { return et.Spec.CollectorRef.Name }},
		{"PHASE", func(et *v1alpha1.EnrollmentToken) string { return string(et.Status.Phase) }},
		{"EXPIRES", func(et *v1alpha1.EnrollmentToken) string { return expiry(now, et) }},
		{"HOST", func(et *v1alpha1.EnrollmentToken) string {
			if r := et.Status.RedeemedBy; r != nil {
				return cmpOrNone(r.HostName)
			}
			return ""
		}},
		{"REDEEMED", func(et *v1alpha1.EnrollmentToken) string {
			if et.Status.RedeemedAt == nil {
				return ""
			}
			return age(now, et.Status.RedeemedAt.Time) + " ago"
		}},
		{"AGE", func(et *v1alpha1.EnrollmentToken) string { return age(now, et.CreationTimestamp.Time) }},
		{"DESCRIPTION", func(et *v1alpha1.EnrollmentToken) string { return et.Spec.Description }},
	}
}

// expiry says when a token stops being accepted, or why it does not expire.
func expiry(now time.Time, et *v1alpha1.EnrollmentToken) string {
	at := et.Status.ExpiresAt
	switch {
	case et.Status.Phase == v1alpha1.TokenRedeemed:
		return "never (redeemed)"
	case at == nil:
		return ""
	case et.Status.Phase == v1alpha1.TokenPending:
		return "in " + duration.HumanDuration(at.Sub(now))
	case et.Status.Phase == v1alpha1.TokenExpired:
		return duration.HumanDuration(now.Sub(at.Time)) + " ago"
	}
	return ""
}

func listTokens(ctx context.Context, c client.Client, e *env, ns string, all bool, collector string) error {
	list := &v1alpha1.EnrollmentTokenList{}
	opts := []client.ListOption{}
	if !all {
		opts = append(opts, client.InNamespace(ns))
	}
	if err := c.List(ctx, list, opts...); err != nil {
		return fmt.Errorf("listing EnrollmentTokens: %w", err)
	}
	tokens := slices.DeleteFunc(list.Items, func(et v1alpha1.EnrollmentToken) bool {
		return collector != "" && et.Spec.CollectorRef.Name != collector
	})
	if len(tokens) == 0 {
		switch {
		case collector != "":
			out(e.streams.ErrOut, "No EnrollmentTokens for managedcollector/%s: kubectl linkmesh enroll %s mints one.\n", collector, collector)
		case all:
			out(e.streams.ErrOut, "No EnrollmentTokens found in any namespace.\n")
		default:
			out(e.streams.ErrOut, "No EnrollmentTokens found in namespace %q.\n", ns)
		}
		return nil
	}
	slices.SortFunc(tokens, func(a, b v1alpha1.EnrollmentToken) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	cols := tokenColumns(e.now())
	if all {
		cols = append([]column[v1alpha1.EnrollmentToken]{{"NAMESPACE", func(et *v1alpha1.EnrollmentToken) string { return et.Namespace }}}, cols...)
	}
	return printTable(e.streams.Out, "", cols, tokens)
}

func newRevokeCommand(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke TOKEN",
		Short: "Revoke an EnrollmentToken for good; its host, if any, is disconnected",
		Long: `Revoke the EnrollmentToken TOKEN (sets spec.revoked). A pending token can no longer be redeemed; the host
that redeemed it is disconnected and refused from then on. A revoked token cannot be reinstated: mint a new one
with kubectl linkmesh enroll.`,
		Example: `  kubectl linkmesh revoke web-01`,
		Args:    exactArgs(1, "TOKEN, the name of an EnrollmentToken"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := e.client()
			if err != nil {
				return err
			}
			return revoke(cmd.Context(), c, e, ns, args[0])
		},
	}
}

func revoke(ctx context.Context, c client.Client, e *env, ns, name string) error {
	et := &v1alpha1.EnrollmentToken{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, et); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("enrollmenttoken %q not found in namespace %q (kubectl linkmesh tokens lists them)", name, ns)
		}
		return fmt.Errorf("reading enrollmenttoken %q: %w", name, err)
	}
	if et.Spec.Revoked {
		out(e.streams.Out, "enrollmenttoken/%s was already revoked\n", name)
		return nil
	}
	patch := client.MergeFrom(et.DeepCopy())
	et.Spec.Revoked = true
	if err := c.Patch(ctx, et, patch); err != nil {
		return fmt.Errorf("revoking enrollmenttoken/%s: %w", name, err)
	}
	host := ""
	if r := et.Status.RedeemedBy; et.Status.Phase == v1alpha1.TokenRedeemed && r != nil {
		host = fmt.Sprintf("; its host %s is disconnected", cmpOrNone(r.HostName))
	}
	out(e.streams.Out, "enrollmenttoken/%s revoked%s\n", name, host)
	return nil
}
