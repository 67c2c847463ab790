package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/attestd/attestd/api/client"
	"github.com/attestd/attestd/api/wire"
)

// resolveRef turns REF into a digest and repository: a digest alone, a
// reference by digest, or a reference by tag, which the server resolves
// once (GET /v1/signatures).
func resolveRef(ctx context.Context, cl *client.Client, ref string) (digest, repository string, err error) {
	switch {
	case strings.HasPrefix(ref, "sha256:"):
		return ref, "", nil
	case strings.Contains(ref, "@"):
		i := strings.LastIndex(ref, "@")
		return ref[i+1:], ref[:i], nil
	}
	sigs, err := cl.Signatures(ctx, ref)
	if err != nil {
		return "", "", fmt.Errorf("resolve %s: %w", ref, err)
	}
	repo, _, _ := strings.Cut(sigs.Image, "@")
	return sigs.Digest, repo, nil
}

func ts(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func short(s string) string {
	if strings.HasPrefix(s, "sha256:") && len(s) > 19 {
		return s[:19] + "…"
	}
	return s
}

func verdict(valid bool, reason string) string {
	if valid {
		return "valid"
	}
	return "INVALID (" + reason + ")"
}

// keyDesc names a key with its id and version ("unversioned" for keys
// without KMS versions: file keys, AWS KMS aliases).
func keyDesc(name, id, version string) string {
	out := "key " + dash(name)
	if id != "" {
		out += " " + short(id)
	}
	if version == "" {
		return out + " (unversioned)"
	}
	return out + " version " + version
}

func by(who string) string {
	if who == "" {
		return ""
	}
	return " by " + who
}

// printStory prints a report as the provenance chain it tells: source,
// build, image, signatures and attestations, decisions, where it ran.
func printStory(w io.Writer, r wire.ArtifactReport) {
	fmt.Fprintf(w, "Artifact %s (verified now, key set revision %d)\n", r.Digest, r.KeySetRevision)
	fmt.Fprintln(w, "\nSource")
	if len(r.Provenance) == 0 {
		fmt.Fprintln(w, "  no provenance")
	}
	for _, p := range r.Provenance {
		line := "  " + dash(p.SourceRepo) + " @ " + dash(p.Commit)
		if p.Ref != "" {
			line += " (" + p.Ref + ")"
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintln(w, "\nBuild")
	for _, p := range r.Provenance {
		fmt.Fprintf(w, "  builder %s, build type %s", dash(p.Builder), dash(p.BuildType))
		if p.ReportedBuildType != "" {
			fmt.Fprintf(w, " (CI reported %s)", p.ReportedBuildType)
		}
		fmt.Fprintf(w, "\n  invocation %s, finished %s\n", dash(p.Invocation), dash(p.FinishedOn))
		e := p.Evidence
		fmt.Fprintf(w, "  provenance written by %s, signed %s with %s%s: %s\n", dash(e.Origin), ts(e.SignedAt), keyDesc(e.KeyName, "", e.KeyVersion), by(e.Signer), verdict(e.Valid, "see attestations"))
	}
	fmt.Fprintln(w, "\nImage")
	for _, x := range r.Repositories {
		tags := ""
		if len(x.Tags) > 0 {
			tags = " (tags " + strings.Join(x.Tags, ", ") + ")"
		}
		fmt.Fprintf(w, "  %s@%s%s, first recorded %s\n", x.Repository, r.Digest, tags, ts(x.FirstSeen))
	}
	for _, wr := range r.Writes {
		verb := "uploaded"
		if wr.Kind == "artifact.registered" {
			verb = "registered"
		}
		fmt.Fprintf(w, "  %s by %s at %s to %s\n", verb, wr.Actor, wr.At.UTC().Format(time.RFC3339), wr.Repository)
	}
	fmt.Fprintln(w, "\nSignatures")
	if len(r.Signatures) == 0 {
		fmt.Fprintln(w, "  none")
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, s := range r.Signatures {
		fmt.Fprintf(tw, "  %s\t%s\tsigned %s%s\t%s %s\n", verdict(s.Valid, s.Reason), keyDesc(s.KeyName, s.KeyID, s.KeyVersion), ts(s.SignedAt), by(s.Signer), s.Format, s.Ref)
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "\nAttestations")
	if len(r.Attestations) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, a := range r.Attestations {
		fmt.Fprintf(tw, "  %s\t%s\torigin %s\t%s\tsigned %s%s\t%s %s\n", verdict(a.Valid, a.Reason), dash(a.PredicateType), dash(a.Origin), keyDesc(a.KeyName, a.KeyID, a.KeyVersion), ts(a.SignedAt), by(a.Signer), a.Format, a.Ref)
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "\nSBOMs")
	if len(r.SBOMs) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, s := range r.SBOMs {
		fmt.Fprintf(w, "  %s, %d packages, origin %s, signed %s%s: %s\n", dash(s.Format), s.Packages, dash(s.Evidence.Origin), ts(s.Evidence.SignedAt), by(s.Evidence.Signer), verdict(s.Evidence.Valid, "see attestations"))
	}
	if len(r.Vulnerabilities) > 0 {
		fmt.Fprintln(w, "\nVulnerabilities")
		for _, v := range r.Vulnerabilities {
			fmt.Fprintf(w, "  %s by %s at %s", v.Evidence.PredicateType, dash(v.Scanner), dash(v.ScannedAt))
			if v.Statements > 0 {
				fmt.Fprintf(w, ": %d statements, %d affected", v.Statements, v.Affected)
			}
			fmt.Fprintf(w, " (%s)\n", verdict(v.Evidence.Valid, "see attestations"))
		}
	}
	fmt.Fprintln(w, "\nDecisions")
	if len(r.Decisions) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, d := range r.Decisions {
		printDecision(w, d)
	}
	fmt.Fprintln(w, "\nWhere it ran")
	if len(r.Admissions) == 0 {
		fmt.Fprintln(w, "  not admitted anywhere on record")
	}
	printAdmissions(w, "  ", r.Admissions)
	if len(r.Notes) > 0 {
		fmt.Fprintln(w, "\nNotes")
		for _, n := range r.Notes {
			fmt.Fprintln(w, "  "+n)
		}
	}
}

func printDecision(w io.Writer, d wire.DecisionRecord) {
	out := "DENY"
	if d.Allowed {
		out = "ALLOW"
	}
	where := ""
	if d.Namespace != "" {
		where = fmt.Sprintf(" in %s %s/%s", d.Namespace, d.WorkloadKind, d.WorkloadName)
	}
	glass := ""
	if d.Breakglass != "" {
		glass = " BREAKGLASS " + d.Breakglass
	}
	fmt.Fprintf(w, "  %s %s policy %s (revision %s, %s)%s, asked by %s%s, decision %s\n    %s\n", d.At.UTC().Format(time.RFC3339), out, d.Policy, d.Revision, d.Mode, where, d.Caller, glass, d.ID, d.Reason)
	for _, r := range d.Reuses {
		fmt.Fprintf(w, "    reused %d× in %s %s/%s, %s to %s\n", r.Count, r.Namespace, r.WorkloadKind, r.WorkloadName, r.First.UTC().Format(time.RFC3339), r.Last.UTC().Format(time.RFC3339))
	}
}

func printAdmissions(w io.Writer, indent string, as []wire.Admission) {
	for _, a := range as {
		glass := ""
		if a.Breakglass {
			glass = " (breakglass)"
		}
		fmt.Fprintf(w, "%s%s %s/%s, first %s, last %s, %d admission(s)%s\n", indent, a.Namespace, dash(a.WorkloadKind), dash(a.WorkloadName),
			a.First.UTC().Format(time.RFC3339), a.Last.UTC().Format(time.RFC3339), a.Count, glass)
	}
}

func showCmd(g *globals) *cobra.Command {
	var repo string
	c := &cobra.Command{
		Use:   "show REF",
		Short: "Everything known about an artifact, as a story: source → build → image → signatures and attestations → decisions → where it ran",
		Long: "REF is an image reference (a tag is resolved once), a reference by digest, or a digest. Signatures and\n" +
			"attestations are read from the registry and verified now, under today's key states; the rest is the record.",
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			digest, r, err := resolveRef(c.Context(), cl, args[0])
			if err != nil {
				return err
			}
			if repo != "" {
				r = repo
			}
			rep, err := cl.Artifact(c.Context(), digest, r)
			if err != nil {
				return err
			}
			return g.print(c.OutOrStdout(), rep, func(w io.Writer) { printStory(w, rep) })
		},
	}
	c.Flags().StringVar(&repo, "repository", "", "read evidence in this repository only (host/path)")
	return c
}

func searchCmd(g *globals) *cobra.Command {
	var q client.ArtifactQuery
	var since, until string
	var all bool
	c := &cobra.Command{
		Use:   "search [--repository R] [--source-repo URL] [--commit SHA] [--signed-by ACTOR] [--key K] [--predicate-type T]",
		Short: "Find artifacts by repository, provenance, signer, key or attestation type, first recorded first",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			if q.Since, err = when(since); err != nil {
				return fmt.Errorf("--since: %w", err)
			}
			if q.Until, err = when(until); err != nil {
				return fmt.Errorf("--until: %w", err)
			}
			q.PredicateType = predicateType(q.PredicateType)
			out := wire.ArtifactsResponse{Artifacts: []wire.ArtifactSummary{}}
			for {
				page, err := cl.SearchArtifacts(c.Context(), q)
				if err != nil {
					return err
				}
				out.Artifacts, out.NextCursor, q.Cursor = append(out.Artifacts, page.Artifacts...), page.NextCursor, page.NextCursor
				if !all || page.NextCursor == "" {
					break
				}
			}
			return g.print(c.OutOrStdout(), out, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "FIRST SEEN\tARTIFACT\tSOURCE")
				for _, a := range out.Artifacts {
					src := "-"
					for _, p := range a.Provenance {
						src = p.SourceRepo + " @ " + p.Commit
					}
					fmt.Fprintf(tw, "%s\t%s@%s\t%s\n", a.FirstSeen.UTC().Format(time.RFC3339), a.Repository, a.Digest, src)
				}
				_ = tw.Flush()
				if out.NextCursor != "" {
					fmt.Fprintf(w, "more: --cursor %s (or --all)\n", out.NextCursor)
				}
			})
		},
	}
	f := c.Flags()
	f.StringVar(&q.Repository, "repository", "", "in this repository (host/path)")
	f.StringVar(&q.SourceRepo, "source-repo", "", "built from this source repository (provenance)")
	f.StringVar(&q.Commit, "commit", "", "built from this commit (provenance)")
	f.StringVar(&q.SignedBy, "signed-by", "", "signed or attested at the request of this actor (token name or id)")
	f.StringVar(&q.Key, "key", "", "signed or attested with this key (name or sha256:… id)")
	f.StringVar(&q.PredicateType, "predicate-type", "", "with an attestation of this type (URI, or spdxjson, cyclonedx, slsaprovenance1 …)")
	f.StringVar(&since, "since", "", "first recorded from this time (RFC 3339) or duration ago (24h)")
	f.StringVar(&until, "until", "", "first recorded before this time (RFC 3339) or duration ago")
	f.StringVar(&q.Cursor, "cursor", "", "continue a listing from its cursor")
	f.IntVar(&q.Limit, "limit", 100, "artifacts per page (at most 1000)")
	f.BoolVar(&all, "all", false, "follow the cursor to the end")
	return c
}

func decisionsCmd(g *globals) *cobra.Command {
	var q client.DecisionQuery
	var since, until string
	var all bool
	c := &cobra.Command{
		Use:   "decisions [--digest D] [--namespace NS] [--policy P] [--allowed true|false] [--breakglass true|false]",
		Short: "List recorded gate decisions with their reasons and where their allows were reused, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			if q.Since, err = when(since); err != nil {
				return fmt.Errorf("--since: %w", err)
			}
			if q.Until, err = when(until); err != nil {
				return fmt.Errorf("--until: %w", err)
			}
			out := wire.DecisionsResponse{Decisions: []wire.DecisionRecord{}}
			for {
				page, err := cl.Decisions(c.Context(), q)
				if err != nil {
					return err
				}
				out.Decisions, out.NextCursor, q.Cursor = append(out.Decisions, page.Decisions...), page.NextCursor, page.NextCursor
				if !all || page.NextCursor == "" {
					break
				}
			}
			return g.print(c.OutOrStdout(), out, func(w io.Writer) {
				for _, d := range out.Decisions {
					fmt.Fprintf(w, "%s\n", d.Image)
					printDecision(w, d)
				}
				if out.NextCursor != "" {
					fmt.Fprintf(w, "more: --cursor %s (or --all)\n", out.NextCursor)
				}
			})
		},
	}
	f := c.Flags()
	f.StringVar(&q.Digest, "digest", "", "about this digest (sha256:…)")
	f.StringVar(&q.Namespace, "namespace", "", "made in, or reused in, this namespace")
	f.StringVar(&q.Policy, "policy", "", "judged by this policy")
	f.StringVar(&q.Allowed, "allowed", "", "true: allows only; false: denies only")
	f.StringVar(&q.Breakglass, "breakglass", "", "true: breakglass allows only")
	f.StringVar(&since, "since", "", "from this time (RFC 3339) or duration ago (24h)")
	f.StringVar(&until, "until", "", "before this time (RFC 3339) or duration ago")
	f.StringVar(&q.Cursor, "cursor", "", "continue a listing from its cursor")
	f.IntVar(&q.Limit, "limit", 100, "decisions per page (at most 1000)")
	f.BoolVar(&all, "all", false, "follow the cursor to the end")
	return c
}

func packagesCmd(g *globals) *cobra.Command {
	var q client.PackageQuery
	var all bool
	c := &cobra.Command{
		Use:   "packages [PURL] [--range vers:TYPE/…] [--license SPDX-ID] [--name N --type T]",
		Short: "Which artifacts contain a package (in a version range, under a license), with the versions found and where they ran",
		Long: "PURL names a package without a version (pkg:deb/debian/bash, pkg:maven/org.apache.logging.log4j/log4j-core), or\n" +
			"with one for that version only. --range is a purl vers range ordered by the package's ecosystem:\n" +
			"'vers:deb/<99', 'vers:maven/>=2.0-beta9|<2.17.1'. Every SBOM attestation is indexed: attestd's own and\n" +
			"the SPDX and CycloneDX ones CI uploads.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			if len(args) == 1 {
				q.PURL = args[0]
			}
			out := wire.PackagesResponse{Matches: []wire.PackageMatch{}}
			for {
				page, err := cl.Packages(c.Context(), q)
				if err != nil {
					return err
				}
				out.Range = page.Range
				out.Matches, out.NextCursor, q.Cursor = append(out.Matches, page.Matches...), page.NextCursor, page.NextCursor
				if !all || page.NextCursor == "" {
					break
				}
			}
			return g.print(c.OutOrStdout(), out, func(w io.Writer) {
				if len(out.Matches) == 0 {
					fmt.Fprintln(w, "No artifact holds it.")
				}
				for _, m := range out.Matches {
					fmt.Fprintf(w, "%s@%s (first recorded %s)\n", m.Repository, m.Digest, m.FirstSeen.UTC().Format(time.RFC3339))
					for _, p := range m.Packages {
						id := p.PURL
						if id == "" {
							id = p.Name + "@" + p.Version
						}
						lic := ""
						if len(p.Licenses) > 0 {
							lic = "  " + strings.Join(p.Licenses, ", ")
						}
						fmt.Fprintf(w, "  %s  version %s%s\n", id, dash(p.Version), lic)
					}
					if m.More > 0 {
						fmt.Fprintf(w, "  … and %d more\n", m.More)
					}
					if len(m.Admissions) == 0 {
						fmt.Fprintln(w, "  not admitted anywhere on record")
					}
					printAdmissions(w, "  ran in ", m.Admissions)
				}
				if out.NextCursor != "" {
					fmt.Fprintf(w, "more: --cursor %s (or --all)\n", out.NextCursor)
				}
			})
		},
	}
	f := c.Flags()
	f.StringVar(&q.Range, "range", "", "version range in purl vers notation, such as vers:deb/<99")
	f.StringVar(&q.License, "license", "", "under this license (an SPDX id)")
	f.StringVar(&q.Name, "name", "", "by package name (instead of a purl)")
	f.StringVar(&q.Type, "type", "", "with --name: the package type (ecosystem): deb, rpm, apk, npm, pypi, maven, golang, cargo, gem, nuget …")
	f.StringVar(&q.Cursor, "cursor", "", "continue a listing from its cursor")
	f.IntVar(&q.Limit, "limit", 100, "artifacts per page (at most 1000)")
	f.BoolVar(&all, "all", false, "follow the cursor to the end")
	return c
}
