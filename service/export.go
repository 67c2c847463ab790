package service

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/attestd/attestd/attest"
	"github.com/attestd/attestd/attest/pack"
	"github.com/attestd/attestd/storage/index"
	"github.com/attestd/attestd/tlog"
)

type manifestReader interface {
	Manifest(ctx context.Context, d name.Digest) ([]byte, error)
}

type exportRecord interface {
	Events(ctx context.Context, f index.EventFilter) ([]index.Event, error)
	DecisionsFor(ctx context.Context, digest string, limit int) ([]index.Decision, error)
}

// exportLog is the audit log's read side: its latest checkpoint, proofs
// and its verifier key.
type exportLog interface {
	Resource(ctx context.Context, p Principal, path string) ([]byte, ResourceKind, error)
	InclusionProof(ctx context.Context, p Principal, index, size uint64) ([][]byte, error)
	VerifierKey() string
}

// Exports writes evidence packs (package attest/pack): everything attestd
// knows about one digest in one tar signed as a whole with the default key,
// checkable offline by `attestctl evidence verify`. Evidence is read only
// through the evidence reader; the record (decisions, events) from the
// index; the log's checkpoint and proofs from the audit log.
type Exports struct {
	resolve  resolver
	manifest manifestReader
	evidence *Evidence
	keys     verifySet
	signers  signerSet
	record   exportRecord
	log      exportLog // nil without an audit log
	now      func() time.Time
}

// NewExports returns the export service; l may be nil (no audit log).
func NewExports(r resolver, m manifestReader, ev *Evidence, ks verifySet, signers signerSet, rec exportRecord, l *AuditLog) *Exports {
	x := &Exports{resolve: r, manifest: m, evidence: ev, keys: ks, signers: signers, record: rec, now: time.Now}
	if l != nil {
		x.log = l
	}
	return x
}

// Bounds of one pack.
const (
	maxExportEvents    = 1000
	maxExportDecisions = 500
)

// Export writes the evidence pack of the subject to w. Only auditors and
// admins may export. The pack is built in memory, bounded by the evidence
// reader's caps, and written only once it is signed: an error leaves w
// untouched.
func (x *Exports) Export(ctx context.Context, p Principal, s SubjectRef, w io.Writer) error {
	if err := Authorize(p, ActionAudit); err != nil {
		return err
	}
	subj, err := pin(ctx, x.resolve, s, nil)
	if err != nil {
		return err
	}
	d := subj.Digest
	key, err := x.signers.Signer("")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	man, err := x.manifest.Manifest(ctx, d)
	if err != nil {
		return registryErr(err)
	}
	sigs, err := x.evidence.Signatures(ctx, d)
	if err != nil {
		return err
	}
	atts, err := x.evidence.Attestations(ctx, d, "")
	if err != nil {
		return err
	}
	files := []pack.File{{Name: pack.ImageManifest, Data: man}}
	var items []pack.Item
	var left []string // what is not included, and why
	for i, c := range sigs.Signatures {
		if !c.Valid {
			left = append(left, fmt.Sprintf("signature %s (%s), which does not verify now: %s", c.Ref, c.Format, c.Reason))
			continue
		}
		it := pack.Item{Kind: "signature", Format: c.Format, Ref: c.Ref}
		if c.Format == "legacy-tag" {
			it.Payload, it.Signature = fmt.Sprintf("signatures/%03d-legacy.payload", i), fmt.Sprintf("signatures/%03d-legacy.sig", i)
			files = append(files, pack.File{Name: it.Payload, Data: c.raw.payload}, pack.File{Name: it.Signature, Data: c.raw.signature})
		} else {
			it.PredicateType, it.Bundle = attest.CosignSignPredicateType, fmt.Sprintf("signatures/%03d-referrer.bundle.json", i)
			files = append(files, pack.File{Name: it.Bundle, Data: c.raw.bundle})
		}
		items = append(items, it)
	}
	var sboms []string
	for i, a := range atts.Attestations {
		if !a.Valid {
			left = append(left, fmt.Sprintf("attestation %s (%s), which does not verify now: %s", a.Ref, a.Format, a.Reason))
			continue
		}
		it := pack.Item{Kind: "attestation", Format: a.Format, Ref: a.Ref, PredicateType: a.PredicateType}
		if a.Format == "legacy-tag" {
			it.Envelope = fmt.Sprintf("attestations/%03d-legacy.dsse.json", i)
			files = append(files, pack.File{Name: it.Envelope, Data: a.Envelope})
			if (a.PredicateType == attest.PredicateSPDX || a.PredicateType == attest.PredicateCycloneDX) && a.statement != nil {
				n := fmt.Sprintf("sboms/%03d-%s.json", i, map[bool]string{true: "spdx", false: "cyclonedx"}[a.PredicateType == attest.PredicateSPDX])
				files = append(files, pack.File{Name: n, Data: a.statement.Predicate})
				sboms = append(sboms, n)
				it.SBOM = n
			}
		} else {
			it.Bundle = fmt.Sprintf("attestations/%03d-referrer.bundle.json", i)
			files = append(files, pack.File{Name: it.Bundle, Data: a.bundle})
		}
		items = append(items, it)
	}

	var ks []pack.Key
	for _, e := range x.keys.All() {
		ks = append(ks, pack.Key{ID: e.Key.ID(), Name: e.Key.Name(), Default: e.Default, State: string(e.Status.State), NotBefore: e.Status.NotBefore,
			NotAfter: e.Status.NotAfter, RevokedAt: e.Status.RevokedAt, Reason: e.Status.Reason, PublicKey: string(e.Key.PublicKeyPEM())})
	}

	decs, err := x.record.DecisionsFor(ctx, d.DigestStr(), maxExportDecisions)
	if err != nil {
		return fmt.Errorf("%w: decisions: %w", ErrUnavailable, err)
	}
	var pd []pack.Decision
	for _, dc := range decs {
		pd = append(pd, pack.Decision{ID: dc.ID, At: dc.At, Policy: dc.Policy, Revision: dc.Revision, Allowed: dc.Allowed, Mode: dc.Mode, Caller: dc.Caller})
	}

	var entries []pack.LogEntry
	var unlogged int
	var cpSize uint64
	if x.log != nil {
		cp, err := x.checkpoint(ctx, p)
		if err != nil {
			return err
		}
		cpSize = cp.Size
		evs, err := x.record.Events(ctx, index.EventFilter{Digest: d.DigestStr(), Limit: maxExportEvents})
		if err != nil {
			return fmt.Errorf("%w: events: %w", ErrUnavailable, err)
		}
		if len(evs) == maxExportEvents {
			left = append(left, fmt.Sprintf("events after the first %d: export holds at most %d", maxExportEvents, maxExportEvents))
		}
		for _, e := range evs {
			if e.LogIndex == nil || *e.LogIndex < 0 {
				unlogged++
				continue
			}
			li := uint64(*e.LogIndex) //nolint:gosec // checked non-negative above
			if li >= cp.Size {
				unlogged++
				continue
			}
			b, err := LogEntry(e)
			if err != nil {
				return err
			}
			proof, err := x.log.InclusionProof(ctx, p, li, cp.Size)
			if err != nil {
				return err
			}
			// The server checks what it exports: a pack that would not
			// verify is an error here, not a surprise for the auditor.
			if err := tlog.CheckInclusion(cp, li, b, proof); err != nil {
				return fmt.Errorf("%w: event %s: %w", ErrUnavailable, e.ID, err)
			}
			entries = append(entries, pack.LogEntry{Index: li, Kind: e.Kind, Entry: b, Proof: proof})
		}
		files = append(files, pack.File{Name: pack.LogCheckpoint, Data: cp.Raw}, pack.File{Name: pack.LogKey, Data: []byte(x.log.VerifierKey() + "\n")})
		j, err := json.MarshalIndent(entries, "", "  ")
		if err != nil {
			return err
		}
		files = append(files, pack.File{Name: pack.LogEntries, Data: j})
	}

	for _, f := range []struct {
		name string
		v    any
	}{{pack.KeysFile, ks}, {pack.EvidenceFile, items}, {pack.DecisionsFile, pd}} {
		j, err := json.MarshalIndent(f.v, "", "  ")
		if err != nil {
			return err
		}
		files = append(files, pack.File{Name: f.name, Data: j})
	}
	now := x.now().UTC().Truncate(time.Second)
	files = append(files, pack.File{Name: pack.SummaryFile, Data: summary(d, now, key.Name(), key.ID(), items, sboms, left, pd, entries, unlogged, cpSize, x.log != nil)})

	var buf bytes.Buffer
	if err := pack.Write(&buf, pack.Manifest{Subject: d.String(), Created: now, KeyID: key.ID()}, files, func(pae []byte) ([]byte, error) { // over the bounds: ErrFormat
		s, err := key.Sign(ctx, pae)
		if err != nil {
			return nil, signErr(err)
		}
		return s, nil
	}); errors.Is(err, pack.ErrFormat) {
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	} else if err != nil {
		return err
	}
	_, err = w.Write(buf.Bytes())
	return err
}

func (x *Exports) checkpoint(ctx context.Context, p Principal) (tlog.Checkpoint, error) {
	raw, _, err := x.log.Resource(ctx, p, "checkpoint")
	if err != nil {
		return tlog.Checkpoint{}, err
	}
	v, err := tlog.NewVerifier(x.log.VerifierKey())
	if err != nil {
		return tlog.Checkpoint{}, err
	}
	cp, err := tlog.OpenCheckpoint(raw, v)
	if err != nil {
		return tlog.Checkpoint{}, fmt.Errorf("%w: the log's checkpoint: %w", ErrUnavailable, err)
	}
	return cp, nil
}

// summary is SUMMARY.md: what the pack holds, for a human.
func summary(d name.Digest, at time.Time, keyName, keyID string, items []pack.Item, sboms, left []string, decs []pack.Decision,
	entries []pack.LogEntry, unlogged int, cpSize uint64, hasLog bool) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# Evidence pack: %s\n\n", d.String())
	fmt.Fprintf(&b, "Written by attestd at %s, signed as a whole by key %s (%s): `%s` is a DSSE envelope whose payload lists the SHA-256 of every member.\n\n",
		at.Format(time.RFC3339), keyName, keyID, pack.ManifestName)
	b.WriteString("Check it offline: `attestctl evidence verify pack.tar --key attestd.pub [--log-key log.pub]`.\n\n")
	b.WriteString("## Signatures and attestations\n\n| kind | type | layout | stored at |\n|---|---|---|---|\n")
	for _, it := range items {
		fmt.Fprintf(&b, "| %s | %s | %s | `%s` |\n", it.Kind, it.PredicateType, it.Format, it.Ref)
	}
	if len(sboms) > 0 {
		fmt.Fprintf(&b, "\nSBOMs (the predicates of the SBOM attestations above): %s\n", strings.Join(sboms, ", "))
	}
	if len(left) > 0 {
		b.WriteString("\nNot included:\n\n")
		for _, l := range left {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	b.WriteString("\n## Gate decisions\n\n")
	if len(decs) == 0 {
		b.WriteString("None.\n")
	}
	for _, dc := range decs {
		v := "deny"
		if dc.Allowed {
			v = "allow"
		}
		fmt.Fprintf(&b, "- %s: %s by policy %s (revision %s), %s, caller %s\n", dc.At.UTC().Format(time.RFC3339), v, dc.Policy, dc.Revision, dc.ID, dc.Caller)
	}
	b.WriteString("\n## Audit log\n\n")
	if !hasLog {
		b.WriteString("This server keeps no audit log.\n")
	} else {
		fmt.Fprintf(&b, "%d events about this digest, each with an inclusion proof under the checkpoint of size %d (`%s`, signed by the log key in `%s`).\n",
			len(entries), cpSize, pack.LogCheckpoint, pack.LogKey)
		if unlogged > 0 {
			fmt.Fprintf(&b, "%d more events were not yet in the checkpoint and are not included.\n", unlogged)
		}
		for _, e := range entries {
			fmt.Fprintf(&b, "- index %d: %s\n", e.Index, e.Kind)
		}
	}
	return []byte(b.String())
}
