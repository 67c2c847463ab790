package indextest

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/attestd/attestd/storage/index"
)

// artifacts: every subject the record names but a decision becomes an
// artifact, once, in the order first recorded; provenance facts, keys,
// predicate types and signers find it; pages resume at the cursor.
func artifacts(t *testing.T, open Opener) {
	db, reopen := open(t)
	t0 := time.Date(2026, 11, 4, 0, 0, 0, 0, time.UTC)
	var evs []index.Event
	for i := range 12 {
		e := event(fmt.Sprintf("a%02d", i), "signature.created", fmt.Sprintf("sha256:%02d", i), "ci", t0.Add(time.Duration(i)*time.Minute))
		e.Evidence = []index.Evidence{{Repository: "reg/app", Digest: e.Digest, Format: "referrer", Content: "c" + e.ID, Kind: "signature", Ref: "r", KeyID: "sha256:k1",
			PredicateType: "https://sigstore.dev/cosign/sign/v1"}}
		if i%3 == 0 {
			e.Provenance = []index.Provenance{{Repository: "reg/app", Digest: e.Digest, SourceRepo: "https://git.example/app", Commit: fmt.Sprintf("c%d", i), Builder: "b", BuildType: "t"}}
		}
		evs = append(evs, e)
	}
	again := event("a-again", "attestation.created", "sha256:00", "release", t0.Add(time.Hour)) // an artifact named again
	again.Evidence = []index.Evidence{{Repository: "reg/app", Digest: "sha256:00", Format: "referrer", Content: "att", Kind: "attestation", Ref: "r", KeyID: "sha256:k2", PredicateType: "https://spdx.dev/Document"}}
	dec := event("a-dec", "decision.made", "sha256:zz", "gate", t0)
	dec.Decision = &index.Decision{ID: "dz", At: t0, Image: "reg/app@sha256:zz", Digest: "sha256:zz", Policy: "p", Revision: "r", Mode: "enforce", Caller: "gate", Detail: "{}"}
	evs = append(evs, again, dec)
	if _, err := db.AppendEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	db = reopen()
	all, err := db.Artifacts(ctx, index.ArtifactFilter{Limit: 100})
	if err != nil || len(all) != 12 {
		t.Fatalf("%d artifacts (%v); want 12: a decision alone is not an artifact, a second event adds none", len(all), err)
	}
	if all[0].Digest != "sha256:00" || !all[0].FirstAt.Equal(t0) || len(all[0].Provenance) != 1 || all[0].Provenance[0].Commit != "c0" {
		t.Errorf("first artifact %+v", all[0])
	}
	var paged []string
	after := int64(0)
	for {
		page, err := db.Artifacts(ctx, index.ArtifactFilter{After: after, Limit: 5})
		must(t, err)
		if len(page) == 0 {
			break
		}
		for _, a := range page {
			paged = append(paged, a.Digest)
		}
		after = page[len(page)-1].ID
	}
	if len(paged) != 12 || paged[11] != "sha256:11" {
		t.Errorf("paging saw %v", paged)
	}
	kinds := []string{"signature.created", "attestation.created"}
	for name, tc := range map[string]struct {
		f    index.ArtifactFilter
		want []string
	}{
		"by source repo":       {index.ArtifactFilter{SourceRepo: "https://git.example/app"}, []string{"sha256:00", "sha256:03", "sha256:06", "sha256:09"}},
		"by source and commit": {index.ArtifactFilter{SourceRepo: "https://git.example/app", Commit: "c6"}, []string{"sha256:06"}},
		"by commit":            {index.ArtifactFilter{Commit: "c9"}, []string{"sha256:09"}},
		"by signer":            {index.ArtifactFilter{SignedBy: "release", SignerKinds: kinds}, []string{"sha256:00"}},
		"by signer id":         {index.ArtifactFilter{SignedBy: "tok-ci", SignerKinds: kinds}, nil},
		"by key":               {index.ArtifactFilter{KeyID: "sha256:k2"}, []string{"sha256:00"}},
		"by predicate type":    {index.ArtifactFilter{PredicateType: "https://spdx.dev/Document"}, []string{"sha256:00"}},
		"by repository":        {index.ArtifactFilter{Repository: "reg/other"}, nil},
		"since and until":      {index.ArtifactFilter{Since: t0.Add(10 * time.Minute), Until: t0.Add(11 * time.Minute)}, []string{"sha256:10"}},
	} {
		got, err := db.Artifacts(ctx, tc.f)
		var ds []string
		for _, a := range got {
			ds = append(ds, a.Digest)
		}
		if name == "by signer id" {
			if len(ds) != 12 {
				t.Errorf("%s: %v %v", name, ds, err)
			}
			continue
		}
		if err != nil || !slices.Equal(ds, tc.want) {
			t.Errorf("%s: %v, %v; want %v", name, ds, err, tc.want)
		}
	}
	as, err := db.ArtifactsByDigest(ctx, "sha256:03")
	if err != nil || len(as) != 1 || as[0].Repository != "reg/app" || len(as[0].Provenance) != 1 {
		t.Errorf("ArtifactsByDigest = %+v, %v", as, err)
	}
}

func pkg(purl, typ, ns, name, version string, lic ...string) index.Package {
	return index.Package{PURL: purl, Type: typ, Namespace: ns, Name: name, Version: version, Licenses: lic}
}

// packages: an SBOM's packages are indexed once per artifact and
// document, in the same transaction as its event, also when the event is
// skipped; queries find artifacts by package and by license, in artifact
// order, bounded per package.
func packages(t *testing.T, open Opener) {
	db, reopen := open(t)
	t0 := time.Date(2026, 11, 5, 0, 0, 0, 0, time.UTC)
	bash := func(v string) index.Package {
		return pkg("pkg:deb/debian/bash@"+v+"?arch=amd64", "deb", "debian", "bash", v, "GPL-3.0-or-later")
	}
	log4j := pkg("pkg:maven/org.apache.logging.log4j/log4j-core@2.16.0", "maven", "org.apache.logging.log4j", "log4j-core", "2.16.0", "Apache-2.0")
	noPURL := pkg("", "", "", "internal-tool", "1")
	sbomEvent := func(id, digest string, ps ...index.Package) index.Event {
		e := event(id, "sbom.created", digest, "ci", t0)
		e.SBOMs = []index.SBOMDoc{{Repository: "reg/app", Digest: digest, DocDigest: "sha256:doc-" + id, Format: "spdx", PredicateType: "https://spdx.dev/Document", Packages: ps}}
		return e
	}
	n, err := db.AppendEvents(ctx, []index.Event{
		sbomEvent("s1", "sha256:a1", bash("5.2.15-2+b2"), log4j, noPURL),
		sbomEvent("s2", "sha256:a2", bash("5.1-6"), bash("5.2.15-2+b2")),
		sbomEvent("s3", "sha256:a3", log4j),
	})
	if err != nil || n.SBOMs != 3 {
		t.Fatalf("AppendEvents = %+v, %v; want 3 SBOMs indexed", n, err)
	}
	// The same document again (a retry, or reindex with an event skipped):
	// nothing new. A second document (CycloneDX) of a1 adds what it lists.
	again := sbomEvent("s1-again", "sha256:a1", bash("5.2.15-2+b2"))
	again.SBOMs[0].DocDigest = "sha256:doc-s1"
	again.OnlyIfNew = true
	cdx := sbomEvent("s4", "sha256:a1", pkg("pkg:npm/left-pad@1.3.0", "npm", "", "left-pad", "1.3.0", "WTFPL", "MIT"))
	cdx.SBOMs[0].Format, cdx.SBOMs[0].PredicateType = "cyclonedx", "https://cyclonedx.org/bom"
	n, err = db.AppendEvents(ctx, []index.Event{again, cdx})
	if err != nil || n.SBOMs != 1 || n.Events != 1 {
		t.Fatalf("again: %+v, %v; want one new SBOM and one event", n, err)
	}
	db = reopen()

	vs, err := db.Packages(ctx, index.PackageQuery{Type: "deb", Namespace: "debian", Name: "bash", HasType: true, HasNamespace: true})
	if err != nil || len(vs) != 2 {
		t.Fatalf("bash versions: %+v, %v", vs, err)
	}
	if vs[0].Version != "5.2.15-2+b2" || vs[0].PURL != "pkg:deb/debian/bash@5.2.15-2+b2?arch=amd64" || !slices.Equal(vs[0].Licenses, []string{"GPL-3.0-or-later"}) {
		t.Errorf("bash row %+v", vs[0])
	}
	if other, _ := db.Packages(ctx, index.PackageQuery{Type: "deb", Namespace: "ubuntu", Name: "bash", HasType: true, HasNamespace: true}); len(other) != 0 {
		t.Errorf("Ubuntu's bash: %+v", other)
	}
	if tool, _ := db.Packages(ctx, index.PackageQuery{Name: "internal-tool"}); len(tool) != 1 || tool[0].PURL != "" {
		t.Errorf("a package without purl, by name: %+v", tool)
	}
	ids := func(ps []index.Package) []int64 {
		var out []int64
		for _, p := range ps {
			out = append(out, p.ID)
		}
		return out
	}
	hs, err := db.ArtifactsHolding(ctx, ids(vs), 0, 10)
	if err != nil || len(hs) != 2 || len(hs[1].PackageIDs) != 2 {
		t.Fatalf("artifacts holding bash: %+v, %v", hs, err)
	}
	as, err := db.ArtifactsByID(ctx, []int64{hs[0].ArtifactID, hs[1].ArtifactID})
	if err != nil || as[0].Digest != "sha256:a1" || as[1].Digest != "sha256:a2" {
		t.Errorf("artifacts by id: %+v %v", as, err)
	}
	page, _ := db.ArtifactsHolding(ctx, ids(vs), hs[0].ArtifactID, 1)
	if len(page) != 1 || page[0].ArtifactID != hs[1].ArtifactID {
		t.Errorf("the page after the cursor: %+v", page)
	}
	lic, err := db.ArtifactsLicensed(ctx, "apache-2.0", 0, 10)
	if err != nil || len(lic) != 2 || len(lic[0].PackageIDs) != 1 {
		t.Fatalf("artifacts licensed Apache-2.0 (any case): %+v, %v", lic, err)
	}
	got, err := db.PackagesByID(ctx, lic[0].PackageIDs)
	if err != nil || len(got) != 1 || got[0].Name != "log4j-core" {
		t.Errorf("the licensed package: %+v %v", got, err)
	}
	if mit, _ := db.ArtifactsLicensed(ctx, "MIT", 0, 10); len(mit) != 1 {
		t.Errorf("a second SBOM's licenses: %+v", mit)
	}
	sb, err := db.SBOMsOf(ctx, "reg/app", "sha256:a1")
	if err != nil || len(sb) != 2 || sb[0].Packages != 3 || sb[1].Format != "cyclonedx" {
		t.Errorf("SBOMs of a1: %+v %v", sb, err)
	}
	if _, err := db.Packages(ctx, index.PackageQuery{Name: "bash", HasType: true, Type: "deb"}); err != nil {
		t.Error(err)
	}
	// A batch that fails leaves no package behind, nor an id that another
	// package could take and the first be found by.
	if _, err := db.AppendEvents(ctx, []index.Event{sbomEvent("s1", "sha256:x1", pkg("pkg:npm/ghost@1.0.0", "npm", "", "ghost", "1.0.0"))}); err == nil {
		t.Fatal("a batch with a duplicate event id was accepted")
	}
	must2 := func(e index.Event) {
		if _, err := db.AppendEvents(ctx, []index.Event{e}); err != nil {
			t.Fatal(err)
		}
	}
	must2(sbomEvent("s5", "sha256:x2", pkg("pkg:npm/other@1.0.0", "npm", "", "other", "1.0.0")))
	must2(sbomEvent("s6", "sha256:x3", pkg("pkg:npm/ghost@1.0.0", "npm", "", "ghost", "1.0.0")))
	must2(sbomEvent("s7", "sha256:x4", pkg("pkg:npm/ghost@1.0.0", "npm", "", "ghost", "1.0.0"))) // known now: from the cache
	for name, want := range map[string][]string{"ghost": {"sha256:x3", "sha256:x4"}, "other": {"sha256:x2"}} {
		rows, err := db.Packages(ctx, index.PackageQuery{Name: name})
		if err != nil || len(rows) != 1 {
			t.Fatalf("%s: %+v %v", name, rows, err)
		}
		hs, _ := db.ArtifactsHolding(ctx, []int64{rows[0].ID}, 0, 10)
		var got []string
		for _, h := range hs {
			as, _ := db.ArtifactsByID(ctx, []int64{h.ArtifactID})
			got = append(got, as[0].Digest)
		}
		if !slices.Equal(got, want) {
			t.Errorf("artifacts holding %s: %v, want %v", name, got, want)
		}
	}

	// Many versions of one package: the query is bounded.
	var many []index.Package
	for i := range index.MaxPackageRows + 1 {
		v := fmt.Sprintf("1.0.%d", i)
		many = append(many, pkg("pkg:npm/busy@"+v, "npm", "", "busy", v))
	}
	if _, err := db.AppendEvents(ctx, []index.Event{sbomEvent("big", "sha256:big", many...)}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Packages(ctx, index.PackageQuery{Name: "busy"}); !errors.Is(err, index.ErrTooBroad) {
		t.Errorf("a query over %d package rows: %v", index.MaxPackageRows, err)
	}
}

// decisionSearch: decisions are found by digest, namespace (also where an
// allow was reused), policy (one of several), outcome and time, paged in
// (time, id) order; admissions gather decisions and reuses per workload.
func decisionSearch(t *testing.T, open Opener) {
	db, _ := open(t)
	t0 := time.Date(2026, 11, 6, 0, 0, 0, 0, time.UTC)
	mk := func(id, digest, policy, ns string, allowed bool, glass string, at time.Time) index.Event {
		e := event("ev-"+id, "decision.made", digest, "gate", at)
		e.Decision = &index.Decision{ID: id, At: at, Image: "reg/app@" + digest, Digest: digest, Policy: policy, Revision: "r", Mode: "enforce",
			Allowed: allowed, Breakglass: glass, Caller: "gate", Detail: `{"reason":"x"}`, Repository: "reg/app", Namespace: ns, WorkloadKind: "Pod", WorkloadName: "web"}
		return e
	}
	evs := []index.Event{
		mk("d1", "sha256:aa", "demo", "", true, "", t0),
		mk("d2", "sha256:aa", "demo,prod_x", "prod", true, "", t0.Add(time.Minute)),
		mk("d3", "sha256:bb", "prodxx", "prod", false, "", t0.Add(2*time.Minute)),
		mk("d4", "sha256:bb", "prod_x", "prod", true, "fire (until …)", t0.Add(2*time.Minute)), // the same time as d3
		mk("d5", "sha256:cc", "demo", "dev", true, "", t0.Add(3*time.Minute)),
	}
	if _, err := db.AppendEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	must(t, db.AddReuse(ctx, []index.Reuse{{DecisionID: "d1", Namespace: "demo", WorkloadKind: "Pod", WorkloadName: "web", Count: 4, First: t0.Add(time.Second), Last: t0.Add(time.Hour)}}))
	yes, no := true, false
	for name, tc := range map[string]struct {
		f    index.DecisionFilter
		want []string
	}{
		"all":                   {index.DecisionFilter{}, []string{"d1", "d2", "d3", "d4", "d5"}},
		"by digest":             {index.DecisionFilter{Digest: "sha256:bb"}, []string{"d3", "d4"}},
		"by namespace or reuse": {index.DecisionFilter{Namespace: "demo"}, []string{"d1"}},
		"by one of policies":    {index.DecisionFilter{Policy: "prod_x"}, []string{"d2", "d4"}},
		"denied":                {index.DecisionFilter{Allowed: &no}, []string{"d3"}},
		"breakglass":            {index.DecisionFilter{Breakglass: &yes}, []string{"d4"}},
		"allowed, not glass":    {index.DecisionFilter{Allowed: &yes, Breakglass: &no}, []string{"d1", "d2", "d5"}},
		"since and until":       {index.DecisionFilter{Since: t0.Add(time.Minute), Until: t0.Add(3 * time.Minute)}, []string{"d2", "d3", "d4"}},
		"after a cursor":        {index.DecisionFilter{AfterAt: t0.Add(2 * time.Minute), AfterID: "d3"}, []string{"d4", "d5"}},
	} {
		got, err := db.SearchDecisions(ctx, tc.f)
		var ids []string
		for _, d := range got {
			ids = append(ids, d.ID)
		}
		if err != nil || !slices.Equal(ids, tc.want) {
			t.Errorf("%s: %v, %v; want %v", name, ids, err, tc.want)
		}
	}
	rs, err := db.ReusesOf(ctx, []string{"d1", "d2"})
	if err != nil || len(rs["d1"]) != 1 || rs["d1"][0].Count != 4 || len(rs["d2"]) != 0 {
		t.Errorf("ReusesOf = %+v, %v", rs, err)
	}
	ad, err := db.Admissions(ctx, []string{"sha256:aa", "sha256:bb"})
	if err != nil || len(ad) != 3 {
		t.Fatalf("admissions: %+v, %v", ad, err)
	}
	// aa: reused in demo (from a verify without namespace), admitted in prod.
	if a := ad[0]; a.Digest != "sha256:aa" || a.Namespace != "demo" || a.Count != 4 || !a.First.Equal(t0.Add(time.Second)) || !a.Last.Equal(t0.Add(time.Hour)) {
		t.Errorf("admission of aa in demo: %+v", a)
	}
	if a := ad[1]; a.Namespace != "prod" || a.Count != 1 || a.Breakglass {
		t.Errorf("admission of aa in prod: %+v", a)
	}
	if a := ad[2]; a.Digest != "sha256:bb" || a.Count != 1 || !a.Breakglass {
		t.Errorf("bb: only the breakglass allow admitted it: %+v", a)
	}
}
