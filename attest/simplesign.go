package attest

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/sigstore/pkg/signature/payload"
)

// Annotations attestd puts inside what it signs, so that they are covered
// by the signature: when it signed and with which key.
const (
	AnnotationSignedAt = "dev.attestd/signed-at"
	AnnotationKeyID    = "dev.attestd/key-id"
	AnnotationKeyVer   = "dev.attestd/key-version"
	// AnnotationOrigin says who wrote the predicate of an attestation:
	// OriginAttestd or OriginCaller. Only attestd sets it, inside the signed
	// statement, so a policy can tell the two apart cryptographically.
	AnnotationOrigin = "dev.attestd/origin"
	// AnnotationIdentity names the CI workload identity (issuer#subject)
	// that asked for the signature, where the caller was one.
	AnnotationIdentity = "dev.attestd/identity"
)

// Origins of an attestation's predicate.
const (
	// OriginAttestd marks a predicate attestd wrote itself: the provenance
	// it generates from a CI report, and the SBOMs it catalogs.
	OriginAttestd = "attestd"
	// OriginCaller marks a predicate a caller submitted for attestd to sign.
	OriginCaller = "caller"
)

// SignMeta is the signed metadata of an attestd signature.
type SignMeta struct {
	SignedAt   time.Time
	KeyID      string
	KeyVersion string
	// Origin is who wrote the predicate (attestations only): OriginAttestd,
	// OriginCaller, or "" where the signature does not say.
	Origin string
	// Identity is the verified workload identity of the caller, issuer#subject.
	Identity string
}

func (m SignMeta) annotations() map[string]string {
	out := map[string]string{}
	if !m.SignedAt.IsZero() {
		out[AnnotationSignedAt] = m.SignedAt.UTC().Format(time.RFC3339)
	}
	if m.KeyID != "" {
		out[AnnotationKeyID] = m.KeyID
	}
	if m.KeyVersion != "" {
		out[AnnotationKeyVer] = m.KeyVersion
	}
	if m.Origin != "" {
		out[AnnotationOrigin] = m.Origin
	}
	if m.Identity != "" {
		out[AnnotationIdentity] = m.Identity
	}
	return out
}

func metaFrom(get func(string) string) SignMeta {
	var m SignMeta
	if t, err := time.Parse(time.RFC3339, get(AnnotationSignedAt)); err == nil {
		m.SignedAt = t
	}
	m.KeyID = get(AnnotationKeyID)
	m.KeyVersion = get(AnnotationKeyVer)
	m.Origin = get(AnnotationOrigin)
	m.Identity = get(AnnotationIdentity)
	return m
}

// SimpleSigning returns the cosign simple-signing payload for the image
// digest d, with meta in its optional section.
func SimpleSigning(d name.Digest, meta SignMeta) ([]byte, error) {
	ann := map[string]any{}
	for k, v := range meta.annotations() {
		ann[k] = v
	}
	p := payload.Cosign{Image: d}
	if len(ann) > 0 {
		p.Annotations = ann
	}
	b, err := p.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("simple-signing payload: %w", err)
	}
	return b, nil
}

// maxPayloadBytes bounds a signed payload accepted for parsing.
const maxPayloadBytes = 1 << 20

// ParseSimpleSigning reads a cosign simple-signing payload and returns the
// digest it signs and attestd's signed metadata, if any.
func ParseSimpleSigning(b []byte) (digest string, meta SignMeta, err error) {
	if len(b) > maxPayloadBytes {
		return "", SignMeta{}, fmt.Errorf("%w: payload over %d bytes", ErrInvalid, maxPayloadBytes)
	}
	var p payload.SimpleContainerImage
	if err := json.Unmarshal(b, &p); err != nil {
		return "", SignMeta{}, fmt.Errorf("%w: simple-signing payload: %w", ErrInvalid, err)
	}
	if p.Critical.Type != payload.CosignSignatureType {
		return "", SignMeta{}, fmt.Errorf("%w: simple-signing type %q", ErrInvalid, p.Critical.Type)
	}
	if p.Critical.Image.DockerManifestDigest == "" {
		return "", SignMeta{}, fmt.Errorf("%w: simple-signing payload names no digest", ErrInvalid)
	}
	meta = metaFrom(func(k string) string {
		s, _ := p.Optional[k].(string)
		return s
	})
	return p.Critical.Image.DockerManifestDigest, meta, nil
}
