package e2e

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/attestd/attestd/api/client"
	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/internal/app"
	"github.com/attestd/attestd/internal/testenv"
	"github.com/attestd/attestd/sbom/inventory"
)

// TestReindexFillsThePackageIndex: SBOMs and provenance already in the
// registry, from before the package index existed (its tables emptied
// here), are indexed by attestd reindex, while attestd serves, once: a
// second reindex indexes nothing new.
func TestReindexFillsThePackageIndex(t *testing.T) {
	ctx := context.Background()
	s := testenv.Start(t, nil)
	signer := s.Token(t, "signer")
	cl := s.Client(t, signer)
	_, d, _ := testenv.PushRandom(t, s.RegistryHost, "reindex/app", &authn.Basic{Username: "ci", Password: signer})
	spdx, err := os.ReadFile(filepath.Join("..", "..", "attest", "testdata", "spdx.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Attest(ctx, wire.AttestRequest{Subject: wire.Subject{Image: d.String()}, PredicateType: "https://spdx.dev/Document", Predicate: spdx}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Provenance(ctx, wire.ProvenanceRequest{Subjects: []wire.Subject{{Image: d.String()}}, Source: wire.Source{Repository: "https://git.example/app", Commit: "f00d"}}); err != nil {
		t.Fatal(err)
	}
	auditor := s.Client(t, s.Token(t, "auditor"))
	find := func() (wire.PackagesResponse, wire.ArtifactsResponse) {
		t.Helper()
		p, err := auditor.Packages(ctx, client.PackageQuery{PURL: "pkg:maven/org.apache.logging.log4j/log4j-core", Range: "vers:maven/<2.17.1"})
		if err != nil {
			t.Fatal(err)
		}
		a, err := auditor.SearchArtifacts(ctx, client.ArtifactQuery{Commit: "f00d"})
		if err != nil {
			t.Fatal(err)
		}
		return p, a
	}
	if p, a := find(); len(p.Matches) != 1 || len(a.Artifacts) != 1 {
		t.Fatalf("recorded at write: %+v %+v", p, a)
	}

	db, err := sql.Open("sqlite", "file:"+filepath.Join(s.DataDir, "index.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"sbom_docs", "artifact_packages", "artifact_licenses", "packages", "provenance"} {
		if _, err := db.ExecContext(ctx, "DELETE FROM "+table); err != nil {
			t.Fatal(err)
		}
	}
	_ = db.Close()
	if p, a := find(); len(p.Matches) != 0 || len(a.Artifacts) != 0 {
		t.Fatalf("the emptied index still finds it: %+v %+v", p, a)
	}

	cfg := s.Config
	cfg.EmbeddedRegistry.Host = s.RegistryHost
	st, err := app.Reindex(ctx, cfg, nil, nil, slog.New(slog.DiscardHandler))
	if err != nil || st.SBOMs != 1 || st.New != 0 {
		t.Fatalf("reindex: %+v, %v; want one SBOM indexed and no new evidence rows", st, err)
	}
	p, a := find()
	if len(p.Matches) != 1 || p.Matches[0].Digest != d.DigestStr() || p.Matches[0].Packages[0].Version != "2.16.0" || len(a.Artifacts) != 1 {
		t.Errorf("after reindex: %+v %+v", p, a)
	}
	if st, err := app.Reindex(ctx, cfg, nil, nil, slog.New(slog.DiscardHandler)); err != nil || st.SBOMs != 0 || st.Events != 0 {
		t.Errorf("a second reindex: %+v, %v; want nothing new", st, err)
	}
}

// TestSBOMOverThePackageCapIsRefused: an SBOM the index cannot hold (more
// packages than inventory.MaxPackages) is refused with 400 before anything
// is signed or stored: every SBOM attestd signs is indexed.
func TestSBOMOverThePackageCapIsRefused(t *testing.T) {
	ctx := context.Background()
	s := testenv.Start(t, nil)
	signer := s.Token(t, "signer")
	cl := s.Client(t, signer)
	_, d, _ := testenv.PushRandom(t, s.RegistryHost, "cap/app", &authn.Basic{Username: "ci", Password: signer})
	var b strings.Builder
	b.WriteString(`{"bomFormat":"CycloneDX","specVersion":"1.5","version":1,"components":[`)
	for i := range inventory.MaxPackages + 1 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"type":"library","name":"p%d"}`, i)
	}
	b.WriteString(`]}`)
	_, err := cl.Attest(ctx, wire.AttestRequest{Subject: wire.Subject{Image: d.String()}, PredicateType: "https://cyclonedx.org/bom", Predicate: []byte(b.String())})
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != 400 || !strings.Contains(ce.Message, "more than 100000") {
		t.Fatalf("an SBOM over the cap: %v", err)
	}
	list, err := cl.Attestations(ctx, d.Context().Name(), d.DigestStr(), "")
	if err != nil || len(list.Attestations) != 0 {
		t.Errorf("refused, yet stored: %+v %v", list, err)
	}
}
