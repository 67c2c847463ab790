package oci

import (
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
