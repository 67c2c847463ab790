package main

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/cheggaaa/pb/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/attestd/attestd/api/client"
	"github.com/attestd/attestd/api/wire"
)

// detectKind says "image" when the file is a tar (maybe gzipped) holding an
// OCI image layout or a docker save archive at its top, and "file" otherwise.
func detectKind(p string) (string, error) {
	f, err := os.Open(p) //nolint:gosec // the user names the file
	if err != nil {
		return "", err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var r io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return "file", nil
		}
		defer zr.Close()
		r = zr
	}
	tr := tar.NewReader(r)
	for i := 0; i < 100_000; i++ {
		h, err := tr.Next()
		if err != nil {
			return "file", nil //nolint:nilerr // not a tar: a plain file
		}
		switch path.Clean(h.Name) {
		case "index.json", "manifest.json":
			return "image", nil
		}
	}
	return "file", nil
}

func pushCmd(g *globals) *cobra.Command {
	var repo, tag, kind, mediaType, artifactType string
	c := &cobra.Command{
		Use:   "push FILE --repo HOST/PATH",
		Short: "Upload an image archive (OCI layout tar or docker save, maybe gzipped) or any file; prints its digest",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			if kind == "auto" {
				if kind, err = detectKind(args[0]); err != nil {
					return err
				}
			}
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				return err
			}
			var body io.Reader = f
			var bar *pb.ProgressBar
			if fd, ok := c.ErrOrStderr().(*os.File); ok && term.IsTerminal(int(fd.Fd())) { //nolint:gosec // a file descriptor fits an int
				bar = pb.Full.Start64(fi.Size())
				bar.SetWriter(fd)
				bar.Set(pb.Bytes, true)
				body = bar.NewProxyReader(f)
			}
			res, err := cl.Upload(c.Context(), body, client.UploadOptions{
				Repository: repo, Tag: tag, Kind: kind, Filename: filepath.Base(args[0]),
				MediaType: mediaType, ArtifactType: artifactType, Size: fi.Size(),
			})
			if bar != nil {
				bar.Finish()
			}
			if err != nil {
				return err
			}
			return g.print(c.OutOrStdout(), res, func(w io.Writer) {
				fmt.Fprintf(w, "Pushed %s (%s, %d bytes)\n", res.Image, kind, res.Size)
			})
		},
	}
	c.Flags().StringVar(&repo, "repo", "", "repository to push to, host/path (required)")
	c.Flags().StringVar(&tag, "tag", "", "tag to set (default: push by digest only)")
	c.Flags().StringVar(&kind, "kind", "auto", "image, file, or auto (image if the file is an image archive)")
	c.Flags().StringVar(&mediaType, "media-type", "", "layer media type of a file artifact (default application/octet-stream)")
	c.Flags().StringVar(&artifactType, "artifact-type", "", "artifactType of a file artifact (default application/vnd.attestd.file.v1)")
	_ = c.MarkFlagRequired("repo")
	return c
}

// subject turns IMAGE, or REPO@DIGEST, into a wire subject.
func subject(s string) wire.Subject { return wire.Subject{Image: s} }

// typeAliases are cosign's --type shorthands.
var typeAliases = map[string]string{
	"slsaprovenance1":  "https://slsa.dev/provenance/v1",
	"slsaprovenance02": "https://slsa.dev/provenance/v0.2",
	"spdxjson":         "https://spdx.dev/Document",
	"cyclonedx":        "https://cyclonedx.org/bom",
	"vuln":             "https://cosign.sigstore.dev/attestation/vuln/v1",
	"openvex":          "https://openvex.dev/ns",
}

func predicateType(t string) string {
	if full, ok := typeAliases[t]; ok {
		return full
	}
	return t
}

func printAttest(g *globals, w io.Writer, res wire.AttestResponse) error {
	return g.print(w, res, func(w io.Writer) {
		fmt.Fprintf(w, "Attested %s about %s\n  key %s (%s), signed %s\n", res.PredicateType, strings.Join(res.Subjects, ", "), res.KeyName, res.KeyID, res.SignedAt.Format("2006-01-02T15:04:05Z"))
		printLocations(w, res.Locations)
	})
}

// printLocations lists where each copy is stored, and whether it was new.
func printLocations(w io.Writer, locs []wire.Location) {
	for _, l := range locs {
		state := "written"
		if l.Existed {
			state = "already present"
		}
		where := l.Ref
		if l.Tag != "" {
			where = l.Tag
		}
		fmt.Fprintf(w, "  %-10s %s (%s)\n", l.Kind, where, state)
	}
}

func attestCmd(g *globals) *cobra.Command {
	var typ, predFile, key string
	c := &cobra.Command{
		Use:   "attest SUBJECT --type T --predicate FILE",
		Short: "Sign an in-toto attestation about SUBJECT (an image reference or REPO@DIGEST)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			pred, err := os.ReadFile(predFile) //nolint:gosec // the user names the file
			if err != nil {
				return err
			}
			res, err := cl.Attest(c.Context(), wire.AttestRequest{Subject: subject(args[0]), PredicateType: predicateType(typ), Predicate: pred, Key: key})
			if err != nil {
				return err
			}
			return printAttest(g, c.OutOrStdout(), res)
		},
	}
	c.Flags().StringVar(&typ, "type", "", "predicate type URI, or slsaprovenance1, slsaprovenance02, spdxjson, cyclonedx, vuln, openvex (required)")
	c.Flags().StringVar(&predFile, "predicate", "", "file holding the predicate JSON (required)")
	c.Flags().StringVar(&key, "key", "", "name of the signing key (default: the server's default)")
	_ = c.MarkFlagRequired("type")
	_ = c.MarkFlagRequired("predicate")
	return c
}

func provenanceCmd(g *globals) *cobra.Command {
	var req wire.ProvenanceRequest
	var paramsFile string
	var materials []string
	c := &cobra.Command{
		Use:   "provenance SUBJECT... --source-repo URL --commit SHA",
		Short: "Have attestd write and sign a SLSA v1 provenance for the artifacts a build made",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			for _, a := range args {
				req.Subjects = append(req.Subjects, subject(a))
			}
			if paramsFile != "" {
				b, err := os.ReadFile(paramsFile) //nolint:gosec // the user names the file
				if err != nil {
					return err
				}
				if !json.Valid(b) {
					return errors.New("--parameters: the file is not JSON")
				}
				req.Parameters = b
			}
			for _, m := range materials {
				uri, dg, _ := strings.Cut(m, "@")
				mat := wire.Material{URI: uri}
				if alg, h, ok := strings.Cut(dg, ":"); ok {
					mat.Digest = map[string]string{alg: h}
				}
				req.Materials = append(req.Materials, mat)
			}
			res, err := cl.Provenance(c.Context(), req)
			if err != nil {
				return err
			}
			return printAttest(g, c.OutOrStdout(), res)
		},
	}
	f := c.Flags()
	f.StringVar(&req.Source.Repository, "source-repo", "", "source repository URL (required with an attestd token; a CI identity's claims say it)")
	f.StringVar(&req.Source.Commit, "commit", "", "source commit (required with an attestd token; a CI identity's claims say it)")
	f.StringVar(&req.Source.Ref, "ref", "", "source ref, e.g. refs/heads/main")
	f.StringVar(&req.BuildType, "build-type", "", "the CI's build type URI (recorded under externalParameters)")
	f.StringVar(&paramsFile, "parameters", "", "JSON file of build parameters")
	f.StringArrayVar(&materials, "material", nil, "a build input as URI@ALG:HEX (repeatable)")
	f.StringVar(&req.StartedOn, "started-on", "", "when the build started (RFC 3339)")
	f.StringVar(&req.FinishedOn, "finished-on", "", "when the build finished (RFC 3339)")
	f.StringVar(&req.Key, "key", "", "name of the signing key (default: the server's default)")
	return c
}

func attestationsCmd(g *globals) *cobra.Command {
	var typ string
	c := &cobra.Command{
		Use:   "attestations SUBJECT",
		Short: "List the attestations stored for SUBJECT (an image reference or REPO@DIGEST), each verified",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			repo, dg, ok := strings.Cut(args[0], "@")
			if !ok {
				art, err := cl.Register(c.Context(), args[0])
				if err != nil {
					return err
				}
				repo, dg, _ = strings.Cut(art.Image, "@")
			}
			list, err := cl.Attestations(c.Context(), repo, dg, predicateType(typ))
			if err != nil {
				return err
			}
			return g.print(c.OutOrStdout(), list, func(w io.Writer) {
				fmt.Fprintf(w, "%s@%s: %d attestations\n", repo, list.Digest, len(list.Attestations))
				for _, a := range list.Attestations {
					verdict := "valid"
					if !a.Valid {
						verdict = "INVALID: " + a.Reason
					}
					when := "-"
					if a.SignedAt != nil {
						when = a.SignedAt.Format("2006-01-02T15:04:05Z")
					}
					origin := a.Origin
					if origin == "" {
						origin = "-"
					}
					fmt.Fprintf(w, "  %-10s %-50s key %-10s origin %-7s %s  %s\n", a.Format, a.PredicateType, a.KeyName, origin, when, verdict)
				}
			})
		},
	}
	c.Flags().StringVar(&typ, "type", "", "only this predicate type (URI or cosign shorthand)")
	return c
}
