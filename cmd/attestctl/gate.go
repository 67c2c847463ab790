package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/service/policy"
)

func verifyCmd(g *globals) *cobra.Command {
	var req wire.VerifyRequest
	var bgReason, bgFor string
	c := &cobra.Command{
		Use:   "verify IMAGE --policy P",
		Short: "Ask the gate whether IMAGE may run; prints the decision with reasons and exits non-zero on deny",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			req.Image = args[0]
			if bgReason != "" {
				req.Breakglass = &wire.BreakglassRequest{Justification: bgReason, Duration: bgFor}
			}
			d, err := cl.Verify(c.Context(), req)
			if err != nil {
				return err
			}
			if err := g.print(c.OutOrStdout(), d, func(w io.Writer) {
				fmt.Fprintf(w, "%s %s\n  policy %s (revision %s, mode %s), decision %s\n  %s\n", strings.ToUpper(d.Decision), d.Image, d.Policy, d.Revision, d.Mode, d.ID, d.Reason)
				for _, r := range d.Requirements {
					mark := "PASS"
					if !r.Pass {
						mark = "FAIL"
					}
					fmt.Fprintf(w, "  %s %s: %s\n", mark, r.Name, r.Reason)
				}
				for _, wn := range d.Warnings {
					fmt.Fprintf(w, "  WARN %s\n", wn)
				}
			}); err != nil {
				return err
			}
			if !d.Allow {
				return errors.New("denied")
			}
			return nil
		},
	}
	c.Flags().StringVar(&req.Policy, "policy", "", "policy name")
	c.Flags().StringVar(&req.Namespace, "namespace", "", "select the policy as admission would, by namespace")
	c.Flags().StringVar(&bgReason, "breakglass", "", "justification to allow despite the policy (if it permits; recorded)")
	c.Flags().StringVar(&bgFor, "breakglass-for", "1h", "how long the breakglass holds")
	return c
}

func policyCmd(g *globals) *cobra.Command {
	p := &cobra.Command{Use: "policy", Short: "Check and load gate policies"}
	lint := &cobra.Command{
		Use:   "lint FILE...",
		Short: "Validate policy files locally, CEL cost included; exits non-zero on the first bad one",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			for _, f := range args {
				b, err := os.ReadFile(f) //nolint:gosec // the user names the file
				if err != nil {
					return err
				}
				pol, err := policy.Parse(b)
				if err != nil {
					return fmt.Errorf("%s: %w", f, err)
				}
				fmt.Fprintf(c.OutOrStdout(), "%s: policy %s (revision %s, mode %s) is valid\n", f, pol.Name, pol.Revision(), pol.Mode)
			}
			return nil
		},
	}
	load := &cobra.Command{
		Use:   "load FILE",
		Short: "Load (or replace) a policy on the server (admin)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			b, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			info, err := cl.PutPolicy(c.Context(), b)
			if err != nil {
				return err
			}
			return g.print(c.OutOrStdout(), info, func(w io.Writer) {
				fmt.Fprintf(w, "Loaded policy %s (revision %s)\n", info.Name, info.Revision)
			})
		},
	}
	p.AddCommand(lint, load, replayCmd(g))
	return p
}
