package oci

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
)

// SignatureTag is cosign's legacy signature tag of d, `sha256-<hex>.sig`,
// named by cosign's own helper. For a digest it makes no request.
func SignatureTag(d name.Digest) name.Tag {
	t, err := ociremote.SignatureTag(d)
	if err != nil { // only for a digest that does not parse, which name.Digest cannot hold
		panic(err)
	}
	return t
}

// AttestationTag is cosign's legacy attestation tag of d, `sha256-<hex>.att`.
func AttestationTag(d name.Digest) name.Tag {
	t, err := ociremote.AttestationTag(d)
	if err != nil {
		panic(err)
	}
	return t
}

// Content identifies one copy of evidence within its layout, the same way
// whether attestd just wrote it or reads it back: a legacy signature by the
// hash of its payload and signature, a legacy attestation by the hash of
// its envelope, a referrer by its manifest digest.

// LegacySignatureContent identifies a legacy `.sig` layer.
func LegacySignatureContent(payload, sig []byte) string {
	h := sha256.New()
	h.Write(payload)
	h.Write([]byte{0})
	h.Write(sig)
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// EnvelopeContent identifies a legacy `.att` layer.
func EnvelopeContent(envelope []byte) string {
	sum := sha256.Sum256(envelope)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// RefContent identifies a referrer by the digest of its reference repo@sha256:….
func RefContent(ref string) string {
	_, d, _ := strings.Cut(ref, "@")
	return d
}
