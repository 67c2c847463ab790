package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/attestd/attestd/api/client"
	"github.com/attestd/attestd/api/wire"
)

// quarantineCmd is incident response: block a digest or a key everywhere
// now, list what is blocked, and lift it.
func quarantineCmd(g *globals) *cobra.Command {
	q := &cobra.Command{Use: "quarantine", Short: "Block a digest or a key everywhere at once; list and lift quarantines"}
	var key, reason string
	add := &cobra.Command{
		Use:   "add [DIGEST | IMAGE@DIGEST] [--key NAME] --reason TEXT",
		Short: "Quarantine a digest (every gate denies it) or a key (its signatures stop counting) (admin)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			req := wire.QuarantineRequest{Key: key, Reason: reason}
			if len(args) == 1 {
				req.Digest = args[0]
				if _, d, ok := strings.Cut(args[0], "@"); ok {
					req.Digest = d
				}
			}
			if (req.Digest == "") == (req.Key == "") {
				return errors.New("give a digest or --key, not both")
			}
			cl, err := g.client()
			if err != nil {
				return err
			}
			x, err := cl.Quarantine(c.Context(), req)
			if err != nil {
				return err
			}
			return g.print(c.OutOrStdout(), x, func(w io.Writer) {
				fmt.Fprintf(w, "Quarantined %s %s: quarantine %s (%s)\n", x.Kind, quarantined(x), x.ID, x.Reason)
			})
		},
	}
	add.Flags().StringVar(&key, "key", "", "quarantine this key (name or id) instead of a digest")
	add.Flags().StringVar(&reason, "reason", "", "why (required; recorded)")
	_ = add.MarkFlagRequired("reason")

	var lifted, all bool
	var kind string
	list := &cobra.Command{
		Use:   "list [--lifted] [--kind digest|key] [--all]",
		Short: "List the quarantines in force (--lifted: lifted ones too) (auditor, admin)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			var out []wire.Quarantine
			cursor := ""
			for {
				page, err := cl.Quarantines(c.Context(), client.QuarantineQuery{Lifted: lifted, Kind: kind, Cursor: cursor, Limit: 1000})
				if err != nil {
					return err
				}
				out = append(out, page.Quarantines...)
				if cursor = page.NextCursor; cursor == "" || !all {
					break
				}
			}
			if out == nil {
				out = []wire.Quarantine{}
			}
			return g.print(c.OutOrStdout(), out, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tKIND\tSUBJECT\tREASON\tBY\tSINCE\tLIFTED")
				for _, x := range out {
					lifted := "-"
					if x.LiftedAt != nil {
						lifted = x.LiftedAt.Format(time.RFC3339) + " by " + x.LiftedBy + ": " + x.LiftReason
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", x.ID, x.Kind, quarantined(x), x.Reason, x.Actor, x.CreatedAt.Format(time.RFC3339), lifted)
				}
				_ = tw.Flush()
			})
		},
	}
	list.Flags().BoolVar(&lifted, "lifted", false, "list lifted quarantines too")
	list.Flags().BoolVar(&all, "all", false, "follow next_cursor to the last page (1000 a page)")
	list.Flags().StringVar(&kind, "kind", "", "digest or key")

	var liftReason string
	lift := &cobra.Command{
		Use:   "lift ID --reason TEXT",
		Short: "Lift a quarantine (admin)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			x, err := cl.LiftQuarantine(c.Context(), args[0], liftReason)
			if err != nil {
				return err
			}
			return g.print(c.OutOrStdout(), x, func(w io.Writer) {
				fmt.Fprintf(w, "Lifted quarantine %s of %s %s (%s)\n", x.ID, x.Kind, quarantined(x), x.LiftReason)
			})
		},
	}
	lift.Flags().StringVar(&liftReason, "reason", "", "why (required; recorded)")
	_ = lift.MarkFlagRequired("reason")
	q.AddCommand(add, list, lift)
	return q
}

func quarantined(x wire.Quarantine) string {
	if x.KeyName != "" {
		return x.KeyName + " (" + x.Subject + ")"
	}
	return x.Subject
}

// deploymentsCmd answers where digests run and whether they would be
// admitted now.
func deploymentsCmd(g *globals) *cobra.Command {
	var q client.DeploymentQuery
	var nonCompliant bool
	d := &cobra.Command{
		Use:   "deployments [--digest D | --key K | --non-compliant] [--namespace NS]",
		Short: "Where a digest runs, where anything signed only by a key runs, or what would now be denied (auditor, admin)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if nonCompliant {
				q.Compliant = "false"
			}
			cl, err := g.client()
			if err != nil {
				return err
			}
			out, err := cl.Deployments(c.Context(), q)
			if err != nil {
				return err
			}
			return g.print(c.OutOrStdout(), out, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "DIGEST\tNAMESPACE\tWORKLOAD\tFIRST\tLAST\tCOUNT\tCOMPLIANT\tREASON")
				for _, x := range out.Deployments {
					ok := "unchecked"
					if x.Compliant != nil {
						ok = strconv.FormatBool(*x.Compliant)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s/%s\t%s\t%s\t%d\t%s\t%s\n", x.Digest, x.Namespace, x.WorkloadKind, x.WorkloadName,
						x.First.Format(time.RFC3339), x.Last.Format(time.RFC3339), x.Count, ok, x.Reason)
				}
				_ = tw.Flush()
				if out.Truncated {
					fmt.Fprintln(w, "(more matched: narrow the query)")
				}
			})
		},
	}
	f := d.Flags()
	f.StringVar(&q.Digest, "digest", "", "where this digest runs")
	f.StringVar(&q.Key, "key", "", "where anything signed only by this key (name or id) runs: its blast radius")
	f.StringVar(&q.Namespace, "namespace", "", "only in this namespace")
	f.BoolVar(&nonCompliant, "non-compliant", false, "what the latest re-validation would deny now, with the reason")
	f.IntVar(&q.Limit, "limit", 0, "at most this many (default 100, at most 1000)")
	run := &cobra.Command{
		Use:   "revalidate",
		Short: "Judge again, now, every recent admission against today's policies, keys and quarantines (admin)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			out, err := cl.Revalidate(c.Context())
			if err != nil {
				return err
			}
			return g.print(c.OutOrStdout(), out, func(w io.Writer) {
				fmt.Fprintf(w, "Re-validated %d admissions: %d would now be denied (attestctl deployments --non-compliant)\n", out.Checked, out.NonCompliant)
			})
		},
	}
	d.AddCommand(run)
	return d
}
