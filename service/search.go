package service

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/attestd/attestd/storage/index"
)

type searchIndex interface {
	Artifacts(ctx context.Context, f index.ArtifactFilter) ([]index.Artifact, error)
	SearchDecisions(ctx context.Context, f index.DecisionFilter) ([]index.Decision, error)
	ReusesOf(ctx context.Context, ids []string) (map[string][]index.Reuse, error)
}

// Search finds artifacts by what the record says of them (repository,
// provenance, signer, key, attestation type, time) and gate decisions by
// digest, namespace, policy, outcome and time: paged with cursors, in a
// stable order.
type Search struct {
	index searchIndex
	keys  func(name string) (string, error)
}

// NewSearch returns the search service. keyByName maps a key name to its
// id (the key set's), for searches by key name.
func NewSearch(ix searchIndex, keyByName func(name string) (string, error)) *Search {
	return &Search{index: ix, keys: keyByName}
}

// ArtifactSearch selects artifacts; every field given must hold.
type ArtifactSearch struct {
	Repository, SourceRepo, Commit string
	// SignedBy is the actor (token name or id) who signed or attested it.
	SignedBy string
	// Key is a key name or id (sha256:…) that signed or attested it.
	Key           string
	PredicateType string
	// Since and Until bound when it was first recorded.
	Since, Until time.Time
	Cursor       string
	Limit        int
}

// ArtifactPage is one page of artifacts, first recorded first.
type ArtifactPage struct {
	Artifacts []index.Artifact
	Next      string
}

const (
	defaultSearchPage = 100
	maxSearchPage     = 1000
	maxQueryValue     = 1024
)

// signerKinds are the events whose actor signed or attested an artifact.
var signerKinds = []string{EventSignatureCreated, EventAttestationCreated, EventProvenanceCreated, EventSBOMCreated}

func checkWindow(since, until time.Time) error {
	if !since.IsZero() && !until.IsZero() && !until.After(since) {
		return fmt.Errorf("%w: until must be after since", ErrInvalid)
	}
	return nil
}

func checkValues(vs ...string) error {
	for _, v := range vs {
		if len(v) > maxQueryValue {
			return fmt.Errorf("%w: a query value is longer than %d characters", ErrInvalid, maxQueryValue)
		}
	}
	return nil
}

// Artifacts lists the artifacts q selects (roles auditor, admin).
func (s *Search) Artifacts(ctx context.Context, p Principal, q ArtifactSearch) (ArtifactPage, error) {
	if err := Authorize(p, ActionAudit); err != nil {
		return ArtifactPage{}, err
	}
	limit, after, err := pageArgs(q.Limit, q.Cursor, defaultSearchPage, maxSearchPage)
	if err != nil {
		return ArtifactPage{}, err
	}
	if err := checkWindow(q.Since, q.Until); err != nil {
		return ArtifactPage{}, err
	}
	if err := checkValues(q.Repository, q.SourceRepo, q.Commit, q.SignedBy, q.Key, q.PredicateType); err != nil {
		return ArtifactPage{}, err
	}
	f := index.ArtifactFilter{Repository: q.Repository, SourceRepo: q.SourceRepo, Commit: q.Commit, SignedBy: q.SignedBy, SignerKinds: signerKinds,
		PredicateType: q.PredicateType, Since: q.Since, Until: q.Until, After: after, Limit: limit}
	if q.Key != "" {
		if strings.HasPrefix(q.Key, "sha256:") {
			f.KeyID = q.Key
		} else if f.KeyID, err = s.keys(q.Key); err != nil {
			return ArtifactPage{}, fmt.Errorf("%w: key %q: %w", ErrInvalid, q.Key, err)
		}
	}
	as, err := s.index.Artifacts(ctx, f)
	if err != nil {
		return ArtifactPage{}, fmt.Errorf("%w: search artifacts: %w", ErrUnavailable, err)
	}
	out := ArtifactPage{Artifacts: as}
	if len(as) == limit {
		out.Next = strconv.FormatInt(as[len(as)-1].ID, 10)
	}
	return out, nil
}

// DecisionSearch selects decisions; every field given must hold.
type DecisionSearch struct {
	Digest, Namespace, Policy string
	Allowed, Breakglass       *bool
	Since, Until              time.Time
	Cursor                    string
	Limit                     int
}

// DecisionPage is one page of decisions, oldest first.
type DecisionPage struct {
	Decisions []DecisionRecord
	Next      string
}

// Decisions lists the decisions q selects (roles auditor, admin), each
// with its reason, requirements and the allows reused from it.
func (s *Search) Decisions(ctx context.Context, p Principal, q DecisionSearch) (DecisionPage, error) {
	if err := Authorize(p, ActionAudit); err != nil {
		return DecisionPage{}, err
	}
	limit := q.Limit
	if limit == 0 {
		limit = defaultSearchPage
	}
	if limit < 1 || limit > maxSearchPage {
		return DecisionPage{}, fmt.Errorf("%w: limit must be 1 to %d", ErrInvalid, maxSearchPage)
	}
	if err := checkWindow(q.Since, q.Until); err != nil {
		return DecisionPage{}, err
	}
	if err := checkValues(q.Digest, q.Namespace, q.Policy); err != nil {
		return DecisionPage{}, err
	}
	if q.Digest != "" {
		if err := checkDigest(q.Digest); err != nil {
			return DecisionPage{}, err
		}
	}
	f := index.DecisionFilter{Digest: q.Digest, Namespace: q.Namespace, Policy: q.Policy, Allowed: q.Allowed, Breakglass: q.Breakglass,
		Since: q.Since, Until: q.Until, Limit: limit}
	if q.Cursor != "" {
		at, id, err := decodeDecisionCursor(q.Cursor)
		if err != nil {
			return DecisionPage{}, err
		}
		f.AfterAt, f.AfterID = at, id
	}
	ds, err := s.index.SearchDecisions(ctx, f)
	if err != nil {
		return DecisionPage{}, fmt.Errorf("%w: search decisions: %w", ErrUnavailable, err)
	}
	recs, err := decisionRecords(ctx, s.index, ds)
	if err != nil {
		return DecisionPage{}, err
	}
	out := DecisionPage{Decisions: recs}
	if len(ds) == limit {
		last := ds[len(ds)-1]
		out.Next = encodeDecisionCursor(last.At, last.ID)
	}
	return out, nil
}

func encodeDecisionCursor(at time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(at.UTC().Format(time.RFC3339Nano) + "|" + id))
}

func decodeDecisionCursor(c string) (time.Time, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err == nil {
		ts, id, ok := strings.Cut(string(b), "|")
		if t, terr := time.Parse(time.RFC3339Nano, ts); ok && terr == nil && id != "" {
			return t, id, nil
		}
	}
	return time.Time{}, "", fmt.Errorf("%w: bad cursor", ErrInvalid)
}
