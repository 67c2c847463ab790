// Command attestctl is the command-line client of attestd for CI pipelines
// and auditors. It is a thin layer over package api/client.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/attestd/attestd/api/client"
	"github.com/attestd/attestd/api/wire"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := root().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "attestctl:", err)
		os.Exit(1)
	}
}

type globals struct {
	server, token, tokenFile, output string
	idTokenFile, audience            string
}

// client returns an API client with the caller's credential: an attestd
// token (--token, ATTESTD_TOKEN, --token-file), or else a CI workload's
// OIDC ID token (--id-token-file, ATTESTD_ID_TOKEN, or requested from
// GitHub Actions for --audience).
func (g *globals) client() (*client.Client, error) {
	tok := g.token
	if tok == "" && g.tokenFile != "" {
		b, err := os.ReadFile(g.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("token file: %w", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	if tok == "" {
		var err error
		if tok, err = idToken(context.Background(), g.idTokenFile, g.audience); err != nil {
			return nil, err
		}
	}
	return client.New(g.server, tok)
}

// print writes v as JSON with -o json, or calls text otherwise.
func (g *globals) print(w io.Writer, v any, text func(io.Writer)) error {
	switch g.output {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "text", "":
		text(w)
		return nil
	}
	return fmt.Errorf("output %q: want text or json", g.output)
}

func envOr(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}

func root() *cobra.Command {
	g := &globals{}
	r := &cobra.Command{
		Use:           "attestctl",
		Short:         "Client for attestd: sign images, manage tokens, list keys",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := r.PersistentFlags()
	pf.StringVar(&g.server, "server", envOr("ATTESTD_URL", "http://127.0.0.1:8080"), "attestd base URL (env ATTESTD_URL)")
	pf.StringVar(&g.token, "token", "", "API token; prefer env ATTESTD_TOKEN, which keeps it out of the process list")
	pf.StringVar(&g.tokenFile, "token-file", os.Getenv("ATTESTD_TOKEN_FILE"), "file holding the API token (env ATTESTD_TOKEN_FILE)")
	pf.StringVarP(&g.output, "output", "o", "text", "output format: text or json")
	pf.StringVar(&g.idTokenFile, "id-token-file", os.Getenv("ATTESTD_ID_TOKEN_FILE"), "file holding a CI workload's OIDC ID token, used when no attestd token is given (env ATTESTD_ID_TOKEN_FILE; or the token in ATTESTD_ID_TOKEN)")
	pf.StringVar(&g.audience, "audience", os.Getenv("ATTESTD_OIDC_AUDIENCE"), "audience of the ID token requested from GitHub Actions: attestd's configured one (env ATTESTD_OIDC_AUDIENCE)")
	r.PersistentPreRunE = func(*cobra.Command, []string) error {
		if g.token == "" {
			g.token = os.Getenv("ATTESTD_TOKEN")
		}
		if g.output != "text" && g.output != "json" {
			return fmt.Errorf("output %q: want text or json", g.output)
		}
		return nil
	}
	r.AddCommand(pushCmd(g), sbomCmd(g), signCmd(g), attestCmd(g), provenanceCmd(g), attestationsCmd(g), signaturesCmd(g), verifyCmd(g), policyCmd(g), keysCmd(g), tokensCmd(g), auditCmd(g), quarantineCmd(g), deploymentsCmd(g), evidenceCmd(g))
	return r
}

func signCmd(g *globals) *cobra.Command {
	var key string
	c := &cobra.Command{
		Use:   "sign IMAGE",
		Short: "Sign an image by digest (a tag is resolved once; the digest signed is printed)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			res, err := cl.SignWith(c.Context(), wire.SignRequest{Image: args[0], Key: key})
			if err != nil {
				return err
			}
			return g.print(c.OutOrStdout(), res, func(w io.Writer) {
				fmt.Fprintf(w, "Signed %s\n  key %s (%s)\n", res.Image, res.KeyName, res.KeyID)
				printLocations(w, res.Locations)
			})
		},
	}
	c.Flags().StringVar(&key, "key", "", "name of the key to sign with (default: the server's default key)")
	return c
}

func keysCmd(g *globals) *cobra.Command {
	var pemOnly bool
	c := &cobra.Command{
		Use:   "keys",
		Short: "List attestd's keys with their states and windows; rotate and revoke them",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			ks, err := cl.Keys(c.Context())
			if err != nil {
				return err
			}
			if pemOnly {
				for _, k := range ks {
					if k.Default {
						_, err := io.WriteString(c.OutOrStdout(), k.PublicKey)
						return err
					}
				}
				return errors.New("no active key")
			}
			return g.print(c.OutOrStdout(), ks, func(w io.Writer) { printKeys(w, ks) })
		},
	}
	c.Flags().BoolVar(&pemOnly, "pem", false, "print only the default key's public key as PEM (for cosign verify --key)")
	rotate := &cobra.Command{
		Use:   "rotate NAME",
		Short: "Make NAME the default signing key; the previous default is retired (admin)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			ks, err := cl.ActivateKey(c.Context(), args[0])
			if err != nil {
				return err
			}
			return g.print(c.OutOrStdout(), ks, func(w io.Writer) { printKeys(w, ks.Keys) })
		},
	}
	var reason string
	revoke := &cobra.Command{
		Use:   "revoke NAME --reason TEXT",
		Short: "Revoke NAME: everything it signed fails verification from now on (admin)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			ks, err := cl.RevokeKey(c.Context(), args[0], reason)
			if err != nil {
				return err
			}
			return g.print(c.OutOrStdout(), ks, func(w io.Writer) { printKeys(w, ks.Keys) })
		},
	}
	revoke.Flags().StringVar(&reason, "reason", "", "why the key is revoked (required)")
	_ = revoke.MarkFlagRequired("reason")
	c.AddCommand(rotate, revoke)
	return c
}

func printKeys(w io.Writer, ks []wire.Key) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tDEFAULT\tVALID FROM\tVALID UNTIL\tREF\tID")
	for _, k := range ks {
		def, until := "", "-"
		if k.Default {
			def = "yes"
		}
		if k.NotAfter != nil {
			until = k.NotAfter.Format(time.RFC3339)
		}
		if k.RevokedAt != nil {
			until = "revoked " + k.RevokedAt.Format(time.RFC3339) + ": " + k.Reason
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.Name, k.State, def, k.NotBefore.Format(time.RFC3339), until, k.Ref, k.ID)
	}
	_ = tw.Flush()
}

func signaturesCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "signatures IMAGE",
		Short: "Check the signatures stored for IMAGE against attestd's key set; exits non-zero if none is valid",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			rep, err := cl.Signatures(c.Context(), args[0])
			if err != nil {
				return err
			}
			if err := g.print(c.OutOrStdout(), rep, func(w io.Writer) {
				fmt.Fprintf(w, "%s\n", rep.Image)
				for _, s := range rep.Signatures {
					verdict := "valid"
					if !s.Valid {
						verdict = "INVALID: " + s.Reason
					}
					key := s.KeyName
					if key == "" {
						key = "-"
					}
					fmt.Fprintf(w, "  %-10s key %-12s %s\n", s.Format, key, verdict)
				}
			}); err != nil {
				return err
			}
			if !rep.Verified {
				return fmt.Errorf("no valid signature for %s", rep.Digest)
			}
			return nil
		},
	}
}

func tokensCmd(g *globals) *cobra.Command {
	t := &cobra.Command{Use: "tokens", Short: "Create, list and revoke API tokens (admin)"}
	var name string
	var roles, repos []string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a token; its secret is printed once",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			tok, err := cl.CreateToken(c.Context(), name, roles, repos)
			if err != nil {
				return err
			}
			return g.print(c.OutOrStdout(), tok, func(w io.Writer) {
				fmt.Fprintf(w, "Created token %s (%s, roles %s, repositories %s). Its secret, shown only now:\n%s\n", tok.ID, tok.Name, strings.Join(tok.Roles, ","), repoList(tok.Repositories), tok.Secret)
			})
		},
	}
	create.Flags().StringVar(&name, "name", "", "token name (required)")
	create.Flags().StringSliceVar(&roles, "role", nil, "role: admin, signer, verifier or auditor (repeatable)")
	create.Flags().StringArrayVar(&repos, "repository", nil, "repository the token may write to: host/path glob, host/team/** for a subtree, '**' for all (repeatable; required for signer)")
	_ = create.MarkFlagRequired("name")
	_ = create.MarkFlagRequired("role")

	list := &cobra.Command{
		Use:   "list",
		Short: "List tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			ts, err := cl.Tokens(c.Context())
			if err != nil {
				return err
			}
			return g.print(c.OutOrStdout(), ts, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tNAME\tROLES\tREPOSITORIES\tCREATED\tREVOKED")
				for _, x := range ts {
					rev := "-"
					if x.RevokedAt != nil {
						rev = x.RevokedAt.Format("2006-01-02T15:04:05Z")
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", x.ID, x.Name, strings.Join(x.Roles, ","), repoList(x.Repositories), x.CreatedAt.Format("2006-01-02T15:04:05Z"), rev)
				}
				_ = tw.Flush()
			})
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a token; it is refused from the next request on",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			if err := cl.RevokeToken(c.Context(), args[0]); err != nil {
				return err
			}
			return g.print(c.OutOrStdout(), map[string]string{"revoked": args[0]}, func(w io.Writer) {
				fmt.Fprintf(w, "Revoked token %s\n", args[0])
			})
		},
	}
	t.AddCommand(create, list, revoke)
	return t
}

// repoList prints a token's repository patterns; "**" reads as all.
func repoList(rs []string) string {
	if len(rs) == 0 {
		return "-"
	}
	if len(rs) == 1 && rs[0] == "**" {
		return "** (all)"
	}
	return strings.Join(rs, ",")
}
