package pack

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/attestd/attestd/attest"
	"github.com/attestd/attestd/tlog"
)

// Member names of a pack's contents.
const (
	ImageManifest = "image/manifest.json"
	KeysFile      = "keys.json"
	EvidenceFile  = "evidence.json"
	DecisionsFile = "decisions.json"
	LogCheckpoint = "log/checkpoint"
	LogKey        = "log/key"
	LogEntries    = "log/entries.json"
	SummaryFile   = "SUMMARY.md"
)

// Key is a key of the key set at export time, with its state and window.
type Key struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Default   bool       `json:"default,omitempty"`
	State     string     `json:"state"`
	NotBefore time.Time  `json:"not_before"`
	NotAfter  *time.Time `json:"not_after,omitempty"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	Reason    string     `json:"reason,omitempty"`
	PublicKey string     `json:"public_key"`
}

// Item is one stored signature or attestation: its kind ("signature" or
// "attestation"), layout ("legacy-tag" or "referrer"), where it was
// stored, and the members holding its original bytes: Payload and
// Signature for a legacy image signature, Envelope for a legacy
// attestation (DSSE JSON), Bundle for a referrer (sigstore bundle JSON).
type Item struct {
	Kind          string `json:"kind"`
	Format        string `json:"format"`
	Ref           string `json:"ref"`
	PredicateType string `json:"predicate_type,omitempty"`
	Payload       string `json:"payload,omitempty"`
	Signature     string `json:"signature,omitempty"`
	Envelope      string `json:"envelope,omitempty"`
	Bundle        string `json:"bundle,omitempty"`
	// SBOM is the member holding an SBOM attestation's predicate, as
	// signed, for reading without unwrapping the envelope.
	SBOM string `json:"sbom,omitempty"`
}

// LogEntry is an event's audit-log entry with its inclusion proof under
// the pack's checkpoint.
type LogEntry struct {
	Index uint64   `json:"index"`
	Kind  string   `json:"kind"`
	Entry []byte   `json:"entry"`
	Proof [][]byte `json:"proof"`
}

// Decision is what the pack says of a gate decision (the index's row).
type Decision struct {
	ID       string    `json:"id"`
	At       time.Time `json:"at"`
	Policy   string    `json:"policy"`
	Revision string    `json:"policy_revision"`
	Allowed  bool      `json:"allowed"`
	Mode     string    `json:"mode,omitempty"`
	Caller   string    `json:"caller,omitempty"`
	LogIndex *uint64   `json:"log_index,omitempty"`
}

// Proven is one thing Check proved, for printing.
type Proven struct {
	What   string
	Detail string
}

// Check checks a verified pack's contents offline: the image manifest's
// digest is the subject's; every signature and attestation verifies with a
// key the pack lists and is bound to the subject digest; every log entry is
// included under the checkpoint, signed by the log key (logKey if given,
// else the pack's, which the pack signature covers); each decision is in
// the log. It returns what was proven, or every failure, each naming the
// member.
func Check(p *Pack, m Manifest, logKey string) ([]Proven, error) {
	var out []Proven
	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	subject, err := name.NewDigest(m.Subject)
	if err != nil {
		return nil, fmt.Errorf("%w: subject %q: %w", ErrFormat, m.Subject, err)
	}
	dg := subject.DigestStr()
	if b, ok := p.Members[ImageManifest]; !ok {
		fail("%s: missing", ImageManifest)
	} else if sum := sha256.Sum256(b); "sha256:"+hex.EncodeToString(sum[:]) != dg {
		fail("%s: its digest is sha256:%x, not the subject's %s", ImageManifest, sum, dg)
	} else {
		out = append(out, Proven{"image manifest", fmt.Sprintf("%s is the manifest of %s (%d bytes)", ImageManifest, dg, len(b))})
	}

	var keys []Key
	if err := decodeMember(p, KeysFile, &keys); err != nil {
		errs = append(errs, err)
	}
	type verifier struct {
		k Key
		v signature.Verifier
	}
	var vs []verifier
	for _, k := range keys {
		pub, err := cryptoutils.UnmarshalPEMToPublicKey([]byte(k.PublicKey))
		if err != nil {
			fail("%s: key %s: %v", KeysFile, k.Name, err)
			continue
		}
		v, err := signature.LoadVerifier(pub, crypto.SHA256)
		if err != nil {
			fail("%s: key %s: %v", KeysFile, k.Name, err)
			continue
		}
		vs = append(vs, verifier{k, v})
	}
	keyDesc := func(k Key) string {
		s := fmt.Sprintf("key %s (%s, %s", k.Name, k.ID, k.State)
		if k.RevokedAt != nil {
			s += " at " + k.RevokedAt.UTC().Format(time.RFC3339)
		}
		return s + " at export)"
	}

	var items []Item
	if err := decodeMember(p, EvidenceFile, &items); err != nil {
		errs = append(errs, err)
	}
	for _, it := range items {
		label := it.Kind + " (" + it.Format + ")"
		if it.PredicateType != "" {
			label = fmt.Sprintf("%s %s (%s)", it.Kind, it.PredicateType, it.Format)
		}
		if kind := describe(it.PredicateType); kind != "" {
			label = kind + " " + label
		}
		var try func(v signature.Verifier) (string, error)
		var predicate []byte // the verified statement's predicate
		switch {
		case it.Kind == "signature" && it.Format == "legacy-tag":
			payload, ok1 := p.Members[it.Payload]
			sig, ok2 := p.Members[it.Signature]
			if !ok1 || !ok2 {
				fail("%s: members %s, %s missing", label, it.Payload, it.Signature)
				continue
			}
			try = func(v signature.Verifier) (string, error) {
				if err := v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(payload)); err != nil {
					return "", err
				}
				d, _, err := attest.ParseSimpleSigning(payload)
				if err != nil {
					return "", err
				}
				if d != dg {
					return "", fmt.Errorf("it signs %s, not %s", d, dg)
				}
				return attest.CosignSignPredicateType, nil
			}
		default:
			var env *attest.BundleEnvelope
			var member string
			var err error
			switch {
			case it.Bundle != "":
				member = it.Bundle
				if b, ok := p.Members[member]; ok {
					env, err = attest.ParseBundle(b)
				}
			case it.Envelope != "":
				member = it.Envelope
				if b, ok := p.Members[member]; ok {
					env, err = attest.ParseEnvelope(b)
				}
			}
			if env == nil || err != nil {
				fail("%s: member %q missing or malformed: %v", label, member, err)
				continue
			}
			try = func(v signature.Verifier) (string, error) {
				if env.PayloadType != attest.InTotoPayloadType {
					return "", fmt.Errorf("payload type %q", env.PayloadType)
				}
				ok := false
				for _, s := range env.Signatures {
					if v.VerifySignature(bytes.NewReader(s), bytes.NewReader(attest.PAE(env.PayloadType, env.Payload))) == nil {
						ok = true
					}
				}
				if !ok {
					return "", errors.New("no signature verifies")
				}
				st, err := attest.ParseStatement(env.Payload)
				if err != nil {
					return "", err
				}
				for _, s := range st.Subjects {
					if s == dg {
						predicate = st.Predicate
						return st.PredicateType, nil
					}
				}
				return "", fmt.Errorf("its subjects %v do not include %s", st.Subjects, dg)
			}
		}
		var done bool
		var last error
		for _, kv := range vs {
			pt, err := try(kv.v)
			if err != nil {
				last = err
				continue
			}
			if it.PredicateType != "" && pt != it.PredicateType {
				fail("%s: it signs predicate type %s", label, pt)
			} else {
				out = append(out, Proven{label, fmt.Sprintf("verifies with %s and binds to %s (%s)", keyDesc(kv.k), dg, it.Ref)})
				if it.SBOM != "" {
					if b, ok := p.Members[it.SBOM]; !ok || !bytes.Equal(b, predicate) {
						fail("%s: not the predicate of the verified attestation %s", it.SBOM, it.Ref)
					} else {
						out = append(out, Proven{"SBOM document", fmt.Sprintf("%s is the predicate of that attestation (%d bytes)", it.SBOM, len(b))})
					}
				}
			}
			done = true
			break
		}
		if !done {
			fail("%s stored at %s: no key in %s verifies it (%v)", label, it.Ref, KeysFile, last)
		}
	}

	logged := map[string]uint64{} // decision id → log index
	if _, ok := p.Members[LogCheckpoint]; ok {
		vkey := logKey
		how := "the pinned log key"
		if vkey == "" {
			vkey, how = string(p.Members[LogKey]), "the log key in the pack (pin one with --log-key)"
		}
		lv, err := tlog.NewVerifier(vkey)
		var cp tlog.Checkpoint
		if err == nil {
			cp, err = tlog.OpenCheckpoint(p.Members[LogCheckpoint], lv)
		}
		if err != nil {
			fail("%s: %v", LogCheckpoint, err)
		} else {
			out = append(out, Proven{"log checkpoint", fmt.Sprintf("%s size %d is signed by %s", cp.Origin, cp.Size, how)})
			var entries []LogEntry
			if err := decodeMember(p, LogEntries, &entries); err != nil {
				errs = append(errs, err)
			}
			for _, e := range entries {
				if err := tlog.CheckInclusion(cp, e.Index, e.Entry, e.Proof); err != nil {
					fail("%s: %s entry %d: %v", LogEntries, e.Kind, e.Index, err)
					continue
				}
				var en struct {
					Kind, Digest string
					Detail       struct {
						DecisionID string `json:"decision_id"`
					}
				}
				if err := json.Unmarshal(e.Entry, &en); err != nil || en.Digest != dg || en.Kind != e.Kind {
					fail("%s: entry %d is not a %s event about %s", LogEntries, e.Index, e.Kind, dg)
					continue
				}
				if en.Detail.DecisionID != "" {
					logged[en.Detail.DecisionID] = e.Index
				}
				out = append(out, Proven{"log inclusion", fmt.Sprintf("%s event at index %d is included under the checkpoint", e.Kind, e.Index)})
			}
		}
	} else {
		out = append(out, Proven{"log", "the pack holds no audit log (the server has none)"})
	}

	var decisions []Decision
	if err := decodeMember(p, DecisionsFile, &decisions); err != nil {
		errs = append(errs, err)
	}
	for _, d := range decisions {
		verdict := "deny"
		if d.Allowed {
			verdict = "allow"
		}
		detail := fmt.Sprintf("%s %s by policy %s (revision %s) at %s", d.ID, verdict, d.Policy, d.Revision, d.At.UTC().Format(time.RFC3339))
		if i, ok := logged[d.ID]; ok {
			detail += fmt.Sprintf(", recorded in the log at index %d", i)
		} else {
			detail += ", not in the pack's log entries (signed by the pack only)"
		}
		out = append(out, Proven{"decision", detail})
	}
	if len(errs) > 0 {
		return out, errors.Join(errs...)
	}
	return out, nil
}

// decodeMember decodes the JSON member n into v; a missing member is an
// error naming it.
func decodeMember(p *Pack, n string, v any) error {
	b, ok := p.Members[n]
	if !ok {
		return fmt.Errorf("%s: missing", n)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", n, err)
	}
	return nil
}

// describe names what a predicate type is, in a word, for printing.
func describe(pt string) string {
	switch {
	case strings.HasPrefix(pt, "https://slsa.dev/provenance/"):
		return "provenance:"
	case pt == attest.PredicateSPDX || pt == attest.PredicateCycloneDX:
		return "SBOM:"
	case pt == attest.PredicateVSA:
		return "VSA:"
	case pt == attest.CosignSignPredicateType:
		return "image signature:"
	}
	return ""
}
