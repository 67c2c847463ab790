package attest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/cyberphone/json-canonicalization/go/src/webpki.org/jsoncanonicalizer"
	intotov1 "github.com/in-toto/attestation/go/v1"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"google.golang.org/protobuf/encoding/protojson"
)

// Subject is one artifact a statement is about.
type Subject struct {
	// Name is the artifact's name: the repository, for an image.
	Name string
	// Digest is "sha256:<hex>".
	Digest string
}

type statementJSON struct {
	Type          string          `json:"_type"`
	Subject       []subjectJSON   `json:"subject"`
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
}

type subjectJSON struct {
	Name        string            `json:"name,omitempty"`
	Digest      map[string]string `json:"digest"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// NewStatement builds an in-toto Statement v1 about subjects, with the
// predicate bytes kept as given (compacted, so numbers keep their
// precision), and meta in the first subject's annotations. The predicate is
// checked against its type, and the statement with the in-toto library.
func NewStatement(subjects []Subject, predicateType string, predicate []byte, meta SignMeta) ([]byte, error) {
	if len(subjects) == 0 {
		return nil, fmt.Errorf("%w: a statement needs a subject", ErrInvalid)
	}
	if err := ValidatePredicate(predicateType, predicate); err != nil {
		return nil, err
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, predicate); err != nil {
		return nil, fmt.Errorf("%w: predicate: %w", ErrInvalid, err)
	}
	st := statementJSON{Type: intotov1.StatementTypeUri, PredicateType: predicateType, Predicate: compact.Bytes()}
	for i, s := range subjects {
		alg, h, ok := strings.Cut(s.Digest, ":")
		if !ok || alg == "" || h == "" {
			return nil, fmt.Errorf("%w: subject digest %q", ErrInvalid, s.Digest)
		}
		sj := subjectJSON{Name: s.Name, Digest: map[string]string{alg: h}}
		if i == 0 {
			if ann := meta.annotations(); len(ann) > 0 {
				sj.Annotations = ann
			}
		}
		st.Subject = append(st.Subject, sj)
	}
	// The in-toto library checks the statement with an empty object in
	// the predicate's place: ValidatePredicate parsed the predicate with
	// the same parser, and parsing a large SBOM again here cost as much as
	// signing and storing it.
	shape := st
	shape.Predicate = json.RawMessage(`{}`)
	sb, err := json.Marshal(shape)
	if err != nil {
		return nil, err
	}
	var pb intotov1.Statement
	if err := protojson.Unmarshal(sb, &pb); err != nil {
		return nil, fmt.Errorf("%w: statement: %w", ErrInvalid, err)
	}
	if err := pb.Validate(); err != nil {
		return nil, fmt.Errorf("%w: statement: %w", ErrInvalid, err)
	}
	return json.Marshal(st)
}

// Envelope returns the DSSE envelope JSON of payload with one signature, in
// the shape cosign stores in a legacy `.att` layer.
func Envelope(payloadType string, payload, sig []byte) ([]byte, error) {
	return json.Marshal(dsse.Envelope{
		PayloadType: payloadType,
		Payload:     base64.StdEncoding.EncodeToString(payload),
		Signatures:  []dsse.Signature{{Sig: base64.StdEncoding.EncodeToString(sig)}},
	})
}

// ParseEnvelope parses a DSSE envelope JSON. It checks shape only.
func ParseEnvelope(b []byte) (*BundleEnvelope, error) {
	if len(b) > maxStatementBytes {
		return nil, fmt.Errorf("%w: envelope over %d bytes", ErrInvalid, maxStatementBytes)
	}
	var e dsse.Envelope
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("%w: envelope: %w", ErrInvalid, err)
	}
	p, err := e.DecodeB64Payload()
	if err != nil {
		return nil, fmt.Errorf("%w: envelope payload: %w", ErrInvalid, err)
	}
	out := &BundleEnvelope{PayloadType: e.PayloadType, Payload: p}
	for _, s := range e.Signatures {
		raw, err := base64.StdEncoding.DecodeString(s.Sig)
		if err != nil {
			continue
		}
		out.Signatures = append(out.Signatures, raw)
	}
	if len(out.Signatures) == 0 {
		return nil, fmt.Errorf("%w: envelope has no signature", ErrInvalid)
	}
	return out, nil
}

// Canonical returns the RFC 8785 canonical form of a JSON value, so that
// two predicates can be compared for sameness whatever their formatting.
func Canonical(b []byte) ([]byte, error) {
	out, err := jsoncanonicalizer.Transform(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return out, nil
}
