package main

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/spf13/cobra"

	"github.com/attestd/attestd/attest/pack"
)

func evidenceCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "evidence",
		Short: "Evidence packs: one signed tar per artifact, checkable offline",
	}
	var out string
	export := &cobra.Command{
		Use:   "export SUBJECT -o pack.tar",
		Short: "Write the evidence pack of SUBJECT (REPO@DIGEST, or an image reference to pin) to a file (auditor or admin)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			repo, dg, ok := strings.Cut(args[0], "@")
			if !ok {
				// Pinned once, read-only (an auditor may not register).
				rep, err := cl.Signatures(c.Context(), args[0])
				if err != nil {
					return err
				}
				repo, dg = strings.TrimSuffix(rep.Image, "@"+rep.Digest), rep.Digest
			}
			var buf bytes.Buffer
			n, err := cl.Evidence(c.Context(), repo, dg, &buf)
			if err != nil {
				return err
			}
			if err := os.WriteFile(out, buf.Bytes(), 0o600); err != nil {
				return err
			}
			_, err = fmt.Fprintf(c.OutOrStdout(), "wrote the evidence pack of %s@%s to %s (%d bytes)\n", repo, dg, out, n)
			return err
		},
	}
	export.Flags().StringVarP(&out, "output", "o", "", "file to write the pack to")
	_ = export.MarkFlagRequired("output")

	var keyFile, logKeyFile string
	verify := &cobra.Command{
		Use:   "verify pack.tar --key attestd.pub [--log-key log.pub]",
		Short: "Verify an evidence pack offline: its signature, every member, each signature and attestation, the log inclusion",
		Long: "Check an evidence pack with no server and no network: the pack's signature with attestd's public key\n" +
			"(--key), every member's SHA-256 against the signed manifest, the image manifest's digest, each signature and\n" +
			"attestation against the keys in the pack and its binding to the digest, and each audit-log entry's inclusion\n" +
			"under the checkpoint, signed by the pinned log key (--log-key; else the pack's own, which its signature covers).\n" +
			"It prints what was proven; any altered byte fails, naming what broke.",
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return verifyPack(c.OutOrStdout(), args[0], keyFile, logKeyFile)
		},
	}
	verify.Flags().StringVar(&keyFile, "key", "", "attestd's public key (PEM), as GET /v1/keys serves it")
	verify.Flags().StringVar(&logKeyFile, "log-key", "", "the audit log's verifier key, pinned (attestctl audit log-key > log.pub)")
	_ = verify.MarkFlagRequired("key")
	c.AddCommand(export, verify)
	return c
}

// readBounded reads a local file of at most max bytes.
func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path) //nolint:gosec // the user names the file
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is over %d bytes", path, max)
	}
	return b, nil
}

func verifyPack(w io.Writer, file, keyFile, logKeyFile string) error {
	pemBytes, err := readBounded(keyFile, 64<<10)
	if err != nil {
		return fmt.Errorf("--key: %w", err)
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pemBytes)
	if err != nil {
		return fmt.Errorf("--key %s: %w", keyFile, err)
	}
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return fmt.Errorf("--key %s: %w", keyFile, err)
	}
	var logKey string
	if logKeyFile != "" {
		b, err := readBounded(logKeyFile, 4<<10)
		if err != nil {
			return fmt.Errorf("--log-key: %w", err)
		}
		logKey = strings.TrimSpace(string(b))
	}
	f, err := os.Open(file) //nolint:gosec // the user names the pack
	if err != nil {
		return err
	}
	defer f.Close()
	p, err := pack.Read(f, pack.DefaultLimits)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	m, err := p.Verify(v)
	if err != nil {
		return fmt.Errorf("%s does not verify: %w", file, err)
	}
	fmt.Fprintf(w, "evidence pack of %s, written %s\n", m.Subject, m.Created.UTC().Format("2006-01-02T15:04:05Z"))
	fmt.Fprintf(w, "PROVEN  pack signature: %s is signed by the key in %s\n", pack.ManifestName, keyFile)
	fmt.Fprintf(w, "PROVEN  members: all %d members are the signed bytes; none missing, none added\n", len(m.Members))
	proven, err := pack.Check(p, m, logKey)
	for _, pr := range proven {
		fmt.Fprintf(w, "PROVEN  %s: %s\n", pr.What, pr.Detail)
	}
	if err != nil {
		return errors.Join(fmt.Errorf("%s does not verify", file), err)
	}
	fmt.Fprintln(w, "OK: every check passed")
	return nil
}
