package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/attestd/attestd/api/wire"
)

func replayCmd(g *globals) *cobra.Command {
	var since, until string
	c := &cobra.Command{
		Use:   "replay FILE --since 720h [--until T]",
		Short: "Judge the decisions recorded in a window again with a candidate policy; list those that would flip, and why (auditor, admin; changes nothing)",
		Long: "The candidate is judged against the evidence in the registry now, for every recorded decision in the window\n" +
			"whose image it covers (and, for admissions, whose namespace). Nothing is loaded or recorded. Roll out a\n" +
			"stricter policy knowing what it will break.",
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			doc, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			req := wire.ReplayRequest{Policy: string(doc)}
			if req.Since, err = when(since); err != nil || req.Since.IsZero() {
				return fmt.Errorf("--since: want an RFC 3339 time or a duration such as 720h")
			}
			if u, err := when(until); err != nil {
				return fmt.Errorf("--until: %w", err)
			} else if !u.IsZero() {
				req.Until = &u
			}
			rep, err := cl.Replay(c.Context(), req)
			if err != nil {
				return err
			}
			return g.print(c.OutOrStdout(), rep, func(w io.Writer) {
				fmt.Fprintf(w, "Replay of policy %s (revision %s, mode %s) over %s to %s\n", rep.Policy, rep.Revision, rep.Mode,
					rep.Since.UTC().Format(time.RFC3339), rep.Until.UTC().Format(time.RFC3339))
				fmt.Fprintf(w, "  %d decisions recorded, %d covered (%d images), %d unchanged, %d would flip\n", rep.Decisions, rep.Judged, rep.Subjects, rep.Unchanged, len(rep.Flips))
				for _, f := range rep.Flips {
					d := f.Decision
					fmt.Fprintf(w, "\n%s → %s  %s\n", upper(f.Recorded), upper(f.Candidate), d.Image)
					printDecision(w, d)
					for _, r := range f.Reasons {
						fmt.Fprintf(w, "    would fail: %s\n", r)
					}
				}
			})
		},
	}
	c.Flags().StringVar(&since, "since", "720h", "window start: an RFC 3339 time or a duration ago")
	c.Flags().StringVar(&until, "until", "", "window end (default now)")
	return c
}

func upper(s string) string {
	if s == "allow" {
		return "ALLOW"
	}
	return "DENY"
}
