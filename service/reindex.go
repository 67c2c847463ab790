package service

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sort"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/attestd/attestd/attest"
	"github.com/attestd/attestd/storage/index"
	"github.com/attestd/attestd/storage/oci"
)

type registryLister interface {
	Parse(ref string) (name.Reference, error)
	Resolve(ctx context.Context, ref name.Reference) (oci.Resolved, error)
	Repositories(ctx context.Context, host string) ([]string, error)
	Tags(ctx context.Context, repo name.Repository) ([]string, error)
}

// Reindex rebuilds the index's evidence rows from the registry, the source
// of truth for evidence: every signature and attestation stored for the
// digests that repositories' tags name, that a key of the set verifies,
// becomes an evidence row. Copies already recorded are left as they are;
// each digest with copies not recorded yet gets one evidence.reindexed
// event. It is idempotent, and safe while attestd serves: it only reads the
// registry, and its writes are inserts of rows not there yet.
type Reindex struct {
	list     registryLister
	evidence *Evidence
	rec      recorder
}

// NewReindex returns the reindexer.
func NewReindex(list registryLister, ev *Evidence, rec recorder) *Reindex {
	return &Reindex{list: list, evidence: ev, rec: rec}
}

// ReindexProgress is told after each digest.
type ReindexProgress func(s ReindexStats, repo string)

// ReindexStats counts what a reindex saw and added.
type ReindexStats struct {
	Repositories, RepositoriesDone int
	Digests                        int
	Copies                         int
	New                            int
	Events                         int
	// SBOMs counts SBOM documents indexed for the first time (packages).
	SBOMs int
}

// Run reindexes repos ("host/path"), or every repository of hosts'
// catalogs when repos is empty.
func (r *Reindex) Run(ctx context.Context, hosts, repos []string, progress ReindexProgress) (ReindexStats, error) {
	var st ReindexStats
	if len(repos) == 0 {
		for _, h := range hosts {
			rs, err := r.list.Repositories(ctx, h)
			if err != nil {
				return st, registryErr(err)
			}
			repos = append(repos, rs...)
		}
	}
	sort.Strings(repos)
	st.Repositories = len(repos)
	for _, repo := range repos {
		ref, err := r.list.Parse(repo)
		if err != nil {
			return st, registryErr(err)
		}
		if err := r.repository(ctx, ref.Context(), &st, progress); err != nil {
			return st, err
		}
		st.RepositoriesDone++
		if progress != nil {
			progress(st, repo)
		}
	}
	return st, nil
}

func (r *Reindex) repository(ctx context.Context, repo name.Repository, st *ReindexStats, progress ReindexProgress) error {
	tags, err := r.list.Tags(ctx, repo)
	if err != nil {
		return registryErr(err)
	}
	// The subjects: what the tags name, and the digests evidence tags are
	// about (an artifact pushed by digest only has no tag of its own).
	seen := map[string]bool{}
	var subjects []name.Digest
	for _, t := range tags {
		if dg, ok := oci.EvidenceSubject(t); ok {
			if !seen[dg] {
				seen[dg] = true
				subjects = append(subjects, repo.Digest(dg))
			}
			continue
		}
		subj, err := r.list.Resolve(ctx, repo.Tag(t))
		if err != nil {
			return fmt.Errorf("resolve %s:%s: %w", repo, t, registryErr(err))
		}
		if dg := subj.Digest.DigestStr(); !seen[dg] {
			seen[dg] = true
			subjects = append(subjects, subj.Digest)
		}
	}
	for _, d := range subjects {
		if err := r.digest(ctx, d, st); err != nil {
			return err
		}
		st.Digests++
		if progress != nil {
			progress(*st, repo.Name())
		}
	}
	return nil
}

// digest records the verified copies stored for d that are not recorded.
func (r *Reindex) digest(ctx context.Context, d name.Digest, st *ReindexStats) error {
	sigs, err := r.evidence.Signatures(ctx, d)
	if err != nil {
		return err
	}
	atts, err := r.evidence.Attestations(ctx, d, "")
	if err != nil {
		return err
	}
	var rows []index.Evidence
	for _, c := range sigs.Signatures {
		if c.KeyID == "" {
			continue // no key of the set verifies it: not attestd's evidence
		}
		rows = append(rows, index.Evidence{Repository: d.Context().Name(), Digest: d.DigestStr(), Format: c.Format, Content: c.Content,
			Kind: "signature", Ref: c.Ref, KeyID: c.KeyID, PredicateType: attest.CosignSignPredicateType, SignedAt: c.SignedAt})
	}
	// The provenance facts and SBOM packages of each attestation a key
	// verifies fill the index too (once per document: the two copies of an
	// attestation say the same).
	var prov []index.Provenance
	var sboms []index.SBOMDoc
	read := map[[32]byte]bool{}
	for _, a := range atts.Attestations {
		if a.KeyID == "" {
			continue
		}
		rows = append(rows, index.Evidence{Repository: d.Context().Name(), Digest: d.DigestStr(), Format: a.Format, Content: a.Content,
			Kind: "attestation", Ref: a.Ref, KeyID: a.KeyID, PredicateType: a.PredicateType, Origin: a.Origin, SignedAt: a.SignedAt})
		if a.statement == nil {
			continue
		}
		if k := sha256.Sum256(append([]byte(a.PredicateType+"\n"), a.statement.Predicate...)); !read[k] {
			read[k] = true
			if f, err := readFacts(a.PredicateType, a.statement.Predicate); err == nil {
				p, s := f.rows(d, a.PredicateType)
				prov, sboms = append(prov, p...), append(sboms, s...)
			}
		}
	}
	st.Copies += len(rows)
	if len(rows) == 0 {
		return nil
	}
	n, err := r.rec.Record(ctx, Event{Kind: EventEvidenceReindexed, Actor: Principal{Name: "reindex"}, Repository: d.Context().Name(), Digest: d.DigestStr(),
		Evidence: rows, OnlyIfNew: true, Detail: map[string]any{"copies": len(rows)}, Provenance: prov, SBOMs: sboms})
	if err != nil {
		return err
	}
	st.Events += n.Events
	st.New += n.Evidence
	st.SBOMs += n.SBOMs
	return nil
}
