package attest

import (
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/sigstore/pkg/signature/payload"
)

// SimpleSigning returns the cosign simple-signing payload for the image
// digest d. The bytes are deterministic for a given digest, so signing the
// same digest twice yields the same payload.
func SimpleSigning(d name.Digest) ([]byte, error) {
	b, err := payload.Cosign{Image: d}.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("simple-signing payload: %w", err)
	}
	return b, nil
}
