package service

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/attestd/attestd/attest"
	"github.com/attestd/attestd/sbom/inventory"
	"github.com/attestd/attestd/storage/index"
)

// facts is what an attestation's predicate tells the artifact and package
// index: SLSA provenance facts, or an SBOM's packages.
type facts struct {
	prov      *attest.Provenance
	sbom      *inventory.Document
	docDigest string
}

// readFacts reads the facts of a predicate of predicateType; a predicate
// of any other type tells nothing. An SBOM that cannot be read (over
// inventory.MaxPackages, or not parseable) is an error wrapping ErrInvalid:
// every SBOM attestd signs is indexed, so it is refused before anything is
// signed.
func readFacts(predicateType string, predicate []byte) (facts, error) {
	f, err := readFactsWithoutDigest(predicateType, predicate)
	if err != nil || f.sbom == nil {
		return f, err
	}
	canon, err := attest.Canonical(predicate)
	if err != nil {
		canon = predicate
	}
	f.setDocDigest(canon)
	return f, nil
}

// readFactsWithoutDigest is readFacts without an SBOM's document digest,
// which setDocDigest then sets from the predicate's canonical form: a
// caller that canonicalizes the predicate anyway does it once.
func readFactsWithoutDigest(predicateType string, predicate []byte) (facts, error) {
	var f facts
	if p, ok := attest.SummarizeProvenance(predicateType, predicate); ok {
		f.prov = &p
	}
	if inventory.IsSBOM(predicateType) {
		doc, err := inventory.Read(predicateType, predicate)
		if err != nil {
			return facts{}, fmt.Errorf("%w: index the SBOM: %w", ErrInvalid, err)
		}
		f.sbom = &doc
	}
	return f, nil
}

// setDocDigest sets an SBOM's document digest: the SHA-256 of its
// canonical form.
func (f *facts) setDocDigest(canon []byte) {
	if f.sbom == nil {
		return
	}
	sum := sha256.Sum256(canon)
	f.docDigest = "sha256:" + hex.EncodeToString(sum[:])
}

// rows turns f into index rows about d.
func (f facts) rows(d name.Digest, predicateType string) ([]index.Provenance, []index.SBOMDoc) {
	repo, dg := d.Context().Name(), d.DigestStr()
	var prov []index.Provenance
	if p := f.prov; p != nil && (p.SourceRepo != "" || p.Commit != "" || p.Builder != "") {
		prov = append(prov, index.Provenance{Repository: repo, Digest: dg, SourceRepo: p.SourceRepo, Commit: p.Commit, Builder: p.Builder, BuildType: p.BuildType})
	}
	var sboms []index.SBOMDoc
	if f.sbom != nil {
		doc := index.SBOMDoc{Repository: repo, Digest: dg, DocDigest: f.docDigest, Format: f.sbom.Format, PredicateType: predicateType,
			Packages: make([]index.Package, len(f.sbom.Packages))}
		for i, p := range f.sbom.Packages {
			doc.Packages[i] = index.Package{PURL: p.PURL, Type: p.Type, Namespace: p.Namespace, Name: p.Name, Version: p.Version, Licenses: p.Licenses}
		}
		sboms = append(sboms, doc)
	}
	return prov, sboms
}
