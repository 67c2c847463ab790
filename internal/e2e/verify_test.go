package e2e

import (
	"context"
	"crypto"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/attestd/attestd/attest"
)

// loadVerifier reads a PEM public key file.
func loadVerifier(t *testing.T, path string) signature.Verifier {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(b)
	if err != nil {
		t.Fatal(err)
	}
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// verifyLegacy verifies the `.sig` tag of ref with the cosign v2 library.
func verifyLegacy(ctx context.Context, ref name.Reference, v signature.Verifier) error {
	co := &cosign.CheckOpts{
		SigVerifier:   v,
		IgnoreTlog:    true,
		ClaimVerifier: cosign.SimpleClaimVerifier,
	}
	_, _, err := cosign.VerifyImageSignatures(ctx, ref, co)
	return err
}

// verifyBundles verifies every attestd bundle referrer of d with sigstore-go
// and returns how many verified.
func verifyBundles(t *testing.T, d name.Digest, v signature.Verifier, auth authn.Authenticator) (int, error) {
	t.Helper()
	idx, err := remote.Referrers(d, remote.WithAuth(auth))
	if err != nil {
		return 0, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return 0, err
	}
	tm := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) {
		return root.NewExpiringKey(v, time.Time{}, time.Time{}), nil
	})
	sv, err := verify.NewVerifier(tm, verify.WithNoObserverTimestamps())
	if err != nil {
		return 0, err
	}
	_, hexd, _ := strings.Cut(d.DigestStr(), ":")
	raw, _ := hex.DecodeString(hexd)
	n := 0
	var lastErr error
	for _, desc := range im.Manifests {
		if desc.ArtifactType != attest.BundleMediaType && desc.ArtifactType != "application/vnd.oci.empty.v1+json" {
			continue
		}
		img, err := remote.Image(d.Context().Digest(desc.Digest.String()), remote.WithAuth(auth))
		if err != nil {
			return n, err
		}
		layers, err := img.Layers()
		if err != nil || len(layers) != 1 {
			return n, err
		}
		rc, err := layers[0].Compressed()
		if err != nil {
			return n, err
		}
		var b sgbundle.Bundle
		buf := new(strings.Builder)
		_, _ = copyN(buf, rc)
		_ = rc.Close()
		if err := b.UnmarshalJSON([]byte(buf.String())); err != nil {
			return n, err
		}
		if _, err := sv.Verify(&b, verify.NewPolicy(verify.WithArtifactDigest("sha256", raw), verify.WithKey())); err != nil {
			lastErr = err
			continue
		}
		n++
	}
	return n, lastErr
}
