package attest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	intotov1 "github.com/in-toto/attestation/go/v1"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
)

// SignStatement returns the in-toto Statement v1 that cosign v3 signs for an
// image signature: the digest as the only subject, predicate type
// https://sigstore.dev/cosign/sign/v1, and an empty predicate. meta goes in
// the subject's annotations, where cosign puts its own (-a).
func SignStatement(d name.Digest, meta SignMeta) ([]byte, error) {
	alg, hex, ok := strings.Cut(d.DigestStr(), ":")
	if !ok {
		return nil, fmt.Errorf("%w: digest %q", ErrInvalid, d.DigestStr())
	}
	subject := &intotov1.ResourceDescriptor{Digest: map[string]string{alg: hex}}
	if ann := meta.annotations(); len(ann) > 0 {
		fields := map[string]any{}
		for k, v := range ann {
			fields[k] = v
		}
		st, err := structpb.NewStruct(fields)
		if err != nil {
			return nil, err
		}
		subject.Annotations = st
	}
	st := &intotov1.Statement{
		Type:          intotov1.StatementTypeUri,
		Subject:       []*intotov1.ResourceDescriptor{subject},
		PredicateType: CosignSignPredicateType,
		Predicate:     &structpb.Struct{},
	}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	b, err := protojson.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("marshal statement: %w", err)
	}
	return b, nil
}

// PAE is the DSSE pre-authentication encoding of payload: the bytes a DSSE
// signature is made over.
func PAE(payloadType string, payload []byte) []byte {
	return dsse.PAE(payloadType, payload)
}

// Bundle assembles a sigstore bundle v0.3 holding a DSSE envelope of payload
// with sig, made by the key whose hint is given. It has no transparency log
// entry: attestd's own audit log gives auditors tamper evidence instead.
func Bundle(payloadType string, payload, sig, hint []byte) ([]byte, error) {
	if len(sig) == 0 || len(hint) == 0 {
		return nil, fmt.Errorf("%w: empty signature or key hint", ErrInvalid)
	}
	b := &protobundle.Bundle{
		MediaType: BundleMediaType,
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_PublicKey{
				PublicKey: &protocommon.PublicKeyIdentifier{Hint: string(hint)},
			},
		},
		Content: &protobundle.Bundle_DsseEnvelope{
			DsseEnvelope: &protodsse.Envelope{
				Payload:     payload,
				PayloadType: payloadType,
				Signatures:  []*protodsse.Signature{{Sig: sig}},
			},
		},
	}
	out, err := protojson.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("marshal bundle: %w", err)
	}
	return out, nil
}

// BundleEnvelope is the DSSE content of a parsed bundle.
type BundleEnvelope struct {
	Hint        string
	PayloadType string
	Payload     []byte
	Signatures  [][]byte
}

// ParseBundle parses a sigstore bundle holding a DSSE envelope. It checks
// shape only; it does not verify signatures.
func ParseBundle(b []byte) (*BundleEnvelope, error) {
	var pb protobundle.Bundle
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, &pb); err != nil {
		return nil, fmt.Errorf("%w: bundle: %w", ErrInvalid, err)
	}
	if !strings.HasPrefix(pb.GetMediaType(), "application/vnd.dev.sigstore.bundle") {
		return nil, fmt.Errorf("%w: bundle media type %q", ErrInvalid, pb.GetMediaType())
	}
	env := pb.GetDsseEnvelope()
	if env == nil {
		return nil, fmt.Errorf("%w: bundle has no DSSE envelope", ErrInvalid)
	}
	out := &BundleEnvelope{
		Hint:        pb.GetVerificationMaterial().GetPublicKey().GetHint(),
		PayloadType: env.GetPayloadType(),
		Payload:     bytes.Clone(env.GetPayload()),
	}
	for _, s := range env.GetSignatures() {
		out.Signatures = append(out.Signatures, s.GetSig())
	}
	if len(out.Signatures) == 0 {
		return nil, fmt.Errorf("%w: DSSE envelope has no signature", ErrInvalid)
	}
	return out, nil
}

// Statement is the part of an in-toto Statement v1 that verification needs.
type Statement struct {
	PredicateType string
	// Subjects are the subject digests, "alg:hex".
	Subjects []string
	// Meta is attestd's signed metadata from the first subject's annotations.
	Meta SignMeta
	// Predicate is the predicate as JSON.
	Predicate []byte
}

// ParseStatement parses and validates an in-toto Statement v1.
func ParseStatement(b []byte) (*Statement, error) {
	if len(b) > maxStatementBytes {
		return nil, fmt.Errorf("%w: statement over %d bytes", ErrInvalid, maxStatementBytes)
	}
	var st intotov1.Statement
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%w: statement: %w", ErrInvalid, err)
	}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("%w: statement: %w", ErrInvalid, err)
	}
	out := &Statement{PredicateType: st.GetPredicateType()}
	for i, s := range st.GetSubject() {
		for alg, h := range s.GetDigest() {
			out.Subjects = append(out.Subjects, alg+":"+h)
		}
		if i == 0 && s.GetAnnotations() != nil {
			f := s.GetAnnotations().GetFields()
			out.Meta = metaFrom(func(k string) string { return f[k].GetStringValue() })
		}
	}
	// The predicate as signed, byte for byte: what a policy sees is what
	// was verified.
	var raw struct {
		Predicate json.RawMessage `json:"predicate"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("%w: statement: %w", ErrInvalid, err)
	}
	out.Predicate = raw.Predicate
	return out, nil
}

// maxStatementBytes bounds a statement accepted for parsing.
const maxStatementBytes = 64 << 20
