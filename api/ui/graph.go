package ui

import (
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/attestd/attestd/service"
)

// node is one box of the provenance graph: a column (stage of the chain),
// the lines it shows and the evidence it links to.
type node struct {
	ID    string
	Kind  string // a CSS class: source, build, image, signature, attestation, sbom, decision, runs
	Lines []string
	// Href is the node's evidence: an anchor on the page or another page.
	Href string
	// OK is false for a signature, attestation or decision that failed.
	OK   bool
	X, Y int
}

type edge struct{ X1, Y1, X2, Y2 int }

type graph struct {
	Width, Height int
	// NodeW and NodeH are every node's size.
	NodeW, NodeH int
	Nodes        []node
	Edges        []edge
}

const (
	nodeW, nodeH   = 250, 64
	colGap, rowGap = 50, 16
	maxLine        = 30
)

// short cuts s to maxLine characters for a node's label; the evidence the
// node links to has it in full.
func short(s string) string {
	if utf8.RuneCountInString(s) <= maxLine {
		return s
	}
	return string([]rune(s)[:maxLine-1]) + "…"
}

func validity(ok bool, reason string) string {
	if ok {
		return "valid"
	}
	if reason == "" {
		return "NOT valid"
	}
	return "NOT valid: " + reason
}

func keyLabel(name, id, version string) string {
	k := name
	if k == "" {
		k = id
	}
	if k == "" {
		k = "no known key"
	}
	if version == "" {
		version = "unversioned"
	}
	return "key " + k + " (" + version + ")"
}

// artifactView is the artifact page: the report and its graph.
type artifactView struct {
	R     service.ArtifactReport
	Graph graph
	// Q is the query; PackagesAsked and Packages answer the SBOM filter.
	Q             url.Values
	PackagesAsked bool
	Packages      []service.PackageMatch
}

// newArtifactView lays the chain out left to right: source → build →
// image → signatures and attestations → decisions → where it ran.
func newArtifactView(rep service.ArtifactReport) artifactView {
	var cols [][]node
	var sources, builds []node
	for i, p := range rep.Provenance {
		src := []string{"source " + short(p.SourceRepo), "commit " + short(p.Commit)}
		sources = append(sources, node{ID: fmt.Sprintf("source-%d", i), Kind: "source", Lines: src, Href: fmt.Sprintf("#prov-%d", i), OK: true})
		builds = append(builds, node{ID: fmt.Sprintf("build-%d", i), Kind: "build", Lines: []string{"build " + short(p.Builder), "commit " + short(p.Commit)},
			Href: fmt.Sprintf("#prov-%d", i), OK: p.Valid})
	}
	if len(sources) > 0 {
		cols = append(cols, sources, builds)
	}
	img := node{ID: "image", Kind: "image", Lines: []string{"image " + short(rep.Digest)}, Href: "#image", OK: true}
	if len(rep.Repositories) > 0 {
		r := rep.Repositories[0]
		img.Lines = append(img.Lines, short(r.Repository+tagSuffix(r.Tags)))
	}
	cols = append(cols, []node{img})
	var evidence []node
	for i, s := range rep.Signatures {
		evidence = append(evidence, node{ID: fmt.Sprintf("sig-%d", i), Kind: "signature", Href: fmt.Sprintf("#sig-%d", i), OK: s.Valid,
			Lines: []string{"signature " + s.Format, short(keyLabel(s.KeyName, s.KeyID, s.KeyVersion)), short(validity(s.Valid, s.Reason))}})
	}
	for i, s := range rep.SBOMs {
		evidence = append(evidence, node{ID: fmt.Sprintf("sbom-%d", i), Kind: "sbom", Href: fmt.Sprintf("#sbom-%d", i), OK: s.Valid,
			Lines: []string{fmt.Sprintf("SBOM %s, %d packages", s.Format, s.Packages), short(keyLabel(s.KeyName, "", s.KeyVersion)), validity(s.Valid, "")}})
	}
	for i, a := range rep.Attestations {
		evidence = append(evidence, node{ID: fmt.Sprintf("att-%d", i), Kind: "attestation", Href: fmt.Sprintf("#att-%d", i), OK: a.Valid,
			Lines: []string{"attestation " + short(predicateName(a.PredicateType)), short(keyLabel(a.KeyName, a.KeyID, a.KeyVersion)), short(validity(a.Valid, a.Reason))}})
	}
	if len(evidence) > 0 {
		cols = append(cols, evidence)
	}
	var decisions []node
	for _, d := range rep.Decisions {
		verdict := "DENY"
		if d.Allowed {
			verdict = "ALLOW"
		}
		if d.Breakglass != "" {
			verdict += " (breakglass)"
		}
		decisions = append(decisions, node{ID: "dec-" + d.ID, Kind: "decision", OK: d.Allowed,
			Href:  "/ui/decisions?" + url.Values{"digest": {rep.Digest}}.Encode() + "#dec-" + url.PathEscape(d.ID),
			Lines: []string{verdict + " policy " + short(d.Policy), d.At.UTC().Format("2006-01-02 15:04:05Z")}})
	}
	if len(decisions) > 0 {
		cols = append(cols, decisions)
	}
	var runs []node
	for i, a := range rep.Admissions {
		runs = append(runs, node{ID: fmt.Sprintf("runs-%d", i), Kind: "runs", Href: fmt.Sprintf("#runs-%d", i), OK: true,
			Lines: []string{"runs in " + short(a.Namespace), short(a.WorkloadKind + "/" + a.WorkloadName)}})
	}
	if len(runs) > 0 {
		cols = append(cols, runs)
	}
	return artifactView{R: rep, Graph: layout(cols)}
}

func tagSuffix(tags []string) string {
	if len(tags) == 0 {
		return ""
	}
	return ":" + strings.Join(tags, ",")
}

func predicateName(t string) string {
	switch t {
	case "https://slsa.dev/provenance/v1":
		return "SLSA provenance v1"
	case "https://spdx.dev/Document":
		return "SPDX SBOM"
	case "https://cyclonedx.org/bom":
		return "CycloneDX SBOM"
	}
	return t
}

// layout places the columns left to right, each centered vertically, and
// joins every node to every node of the next column.
func layout(cols [][]node) graph {
	tallest := 0
	for _, c := range cols {
		tallest = max(tallest, len(c))
	}
	g := graph{NodeW: nodeW, NodeH: nodeH, Width: len(cols)*(nodeW+colGap) - colGap + 2, Height: tallest*(nodeH+rowGap) - rowGap + 2}
	for ci, c := range cols {
		top := (g.Height - (len(c)*(nodeH+rowGap) - rowGap)) / 2
		for ni := range c {
			c[ni].X, c[ni].Y = 1+ci*(nodeW+colGap), top+ni*(nodeH+rowGap)
		}
	}
	for ci := 0; ci+1 < len(cols); ci++ {
		for _, a := range cols[ci] {
			for _, b := range cols[ci+1] {
				g.Edges = append(g.Edges, edge{a.X + nodeW, a.Y + nodeH/2, b.X, b.Y + nodeH/2})
			}
		}
	}
	for _, c := range cols {
		g.Nodes = append(g.Nodes, c...)
	}
	return g
}
