package e2e

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/attestd/attestd/api/client"
	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/attest"
	"github.com/attestd/attestd/internal/app"
	"github.com/attestd/attestd/internal/testenv"
	"github.com/attestd/attestd/keys"
	"github.com/attestd/attestd/storage/oci"
)

// TestRotationAndRevocation signs with key A (the local key), rotates to
// key B (in local-kms), signs again, and checks both verify in attestd and
// with cosign. A signature forged with A after its retirement is refused.
// Revoking A denies everything A signed, with the reason. The states survive
// a restart, and a restart with the KMS down still verifies from the cached
// public key while signing answers 503.
func TestRotationAndRevocation(t *testing.T) {
	ctx := context.Background()
	kms := testenv.StartLocalKMS(t)
	bURI := kms.CreateKey(t, "attestd-b")
	dataDir := t.TempDir()
	cfg := func(c *app.Config) {
		c.DataDir = dataDir
		c.Keys = []app.KeyConfig{{Name: "a", URI: "file://"}, {Name: "b", URI: bURI}}
		c.DefaultKey = "a"
		c.KMSTimeout = 2 * time.Second
	}
	s := testenv.Start(t, cfg)
	signer := s.Token(t, "signer")
	verifier := s.Token(t, "verifier")
	auth := &authn.Basic{Username: "ci", Password: signer}
	cl, vc := s.Client(t, signer), s.Client(t, verifier)

	_, img1, _ := testenv.PushRandom(t, s.RegistryHost, "rot/one", auth)
	if r, err := cl.Sign(ctx, img1.String()); err != nil || r.KeyName != "a" {
		t.Fatalf("sign with a: %+v %v", r, err)
	}
	rep := mustSignatures(t, vc, img1.String())
	if !rep.Verified || len(rep.Signatures) != 2 || !allValid(rep, "a") {
		t.Fatalf("img1 before rotation: %+v", rep)
	}
	rev0 := keySet(t, s).Revision

	ks, err := s.Admin.ActivateKey(ctx, "b")
	if err != nil {
		t.Fatalf("rotate to b: %v", err)
	}
	a, b := find(ks.Keys, "a"), find(ks.Keys, "b")
	if a.State != "retired" || a.NotAfter == nil || a.Default || !b.Default || b.State != "active" || ks.Revision == rev0 {
		t.Fatalf("after rotation: a=%+v b=%+v revision %d (was %d)", a, b, ks.Revision, rev0)
	}

	var ce *client.Error
	_, img2, _ := testenv.PushRandom(t, s.RegistryHost, "rot/two", auth)
	if _, err := cl.SignWith(ctx, wire.SignRequest{Image: img2.String(), Key: "a"}); !errors.As(err, &ce) || ce.Status != http.StatusForbidden {
		t.Errorf("signing with retired a: %v, want 403", err)
	}
	if r, err := cl.Sign(ctx, img2.String()); err != nil || r.KeyName != "b" {
		t.Fatalf("sign with b: %+v %v", r, err)
	}
	if rep := mustSignatures(t, vc, img2.String()); !rep.Verified || !allValid(rep, "b") {
		t.Errorf("img2 signed by b: %+v", rep)
	}
	if rep := mustSignatures(t, vc, img1.String()); !rep.Verified || !allValid(rep, "a") {
		t.Errorf("img1 signed by a before its retirement no longer verifies: %+v", rep)
	}

	t.Run("cosign verifies both keys' signatures", func(t *testing.T) {
		for img, key := range map[name.Digest]wire.Key{img1: a, img2: b} {
			pem := filepath.Join(t.TempDir(), key.Name+".pub")
			_ = os.WriteFile(pem, []byte(key.PublicKey), 0o600)
			if out, err := cosigns(t)[1].run(t, "verify", "--insecure-ignore-tlog=true", "--allow-http-registry=true", "--key", pem, img.String()); err != nil {
				t.Errorf("cosign verify %s with %s: %v\n%s", img, key.Name, err, out)
			}
		}
	})

	t.Run("a signature by a dated after its retirement is refused", func(t *testing.T) {
		_, img3, _ := testenv.PushRandom(t, s.RegistryHost, "rot/three", auth)
		forgeLegacy(t, s, img3, attest.SignMeta{SignedAt: time.Now().Add(time.Hour)}, auth)
		rep := mustSignatures(t, vc, img3.String())
		if rep.Verified || len(rep.Signatures) != 1 || !strings.Contains(rep.Signatures[0].Reason, "retired") {
			t.Errorf("forged late signature: %+v", rep)
		}
		_, img4, _ := testenv.PushRandom(t, s.RegistryHost, "rot/four", auth)
		forgeLegacy(t, s, img4, attest.SignMeta{}, auth)
		if rep := mustSignatures(t, vc, img4.String()); rep.Verified {
			t.Errorf("undated signature by a retired key accepted: %+v", rep)
		}
	})

	t.Run("revoking a denies what a signed, with the reason", func(t *testing.T) {
		if _, err := s.Admin.RevokeKey(ctx, "b", "testing"); !errors.As(err, &ce) || ce.Status != http.StatusBadRequest {
			t.Errorf("revoking the default key: %v, want 400", err)
		}
		if _, err := s.Admin.RevokeKey(ctx, "a", " "); !errors.As(err, &ce) || ce.Status != http.StatusBadRequest {
			t.Errorf("revocation without a reason: %v, want 400", err)
		}
		if _, err := cl.RevokeKey(ctx, "a", "x"); !errors.As(err, &ce) || ce.Status != http.StatusForbidden {
			t.Errorf("signer revoking a key: %v, want 403", err)
		}
		ks, err := s.Admin.RevokeKey(ctx, "a", "key file leaked")
		if err != nil {
			t.Fatal(err)
		}
		if k := find(ks.Keys, "a"); k.State != "revoked" || k.RevokedAt == nil || k.Reason != "key file leaked" {
			t.Errorf("a after revocation: %+v", k)
		}
		rep := mustSignatures(t, vc, img1.String())
		if rep.Verified {
			t.Fatalf("img1 still verified after a was revoked: %+v", rep)
		}
		for _, c := range rep.Signatures {
			if c.Valid || !strings.Contains(c.Reason, "revoked") || !strings.Contains(c.Reason, "key file leaked") {
				t.Errorf("signature by revoked a: %+v", c)
			}
		}
		if rep := mustSignatures(t, vc, img2.String()); !rep.Verified {
			t.Errorf("b's signature denied by a's revocation: %+v", rep)
		}
		if _, err := s.Admin.ActivateKey(ctx, "a"); !errors.As(err, &ce) || ce.Status != http.StatusBadRequest {
			t.Errorf("activating revoked a: %v, want 400", err)
		}
	})

	t.Run("states survive a restart, and the KMS can be down", func(t *testing.T) {
		s.Stop()
		kms.Stop()
		s2 := testenv.Start(t, cfg) // configured default is a: the stored rotation wins
		ks := keySet(t, s2)
		if a, b := find(ks.Keys, "a"), find(ks.Keys, "b"); a.State != "revoked" || !b.Default || b.State != "active" {
			t.Fatalf("after restart: a=%+v b=%+v", a, b)
		}
		vc2 := s2.Client(t, s2.Token(t, "verifier"))
		img2b := s2.RegistryHost + "/rot/two@" + img2.DigestStr()
		if rep := mustSignatures(t, vc2, img2b); !rep.Verified {
			t.Errorf("b's signature with the KMS down after a restart: %+v", rep)
		}
		img1b := s2.RegistryHost + "/rot/one@" + img1.DigestStr()
		if rep := mustSignatures(t, vc2, img1b); rep.Verified {
			t.Errorf("a's signature verified after restart although a is revoked: %+v", rep)
		}
		_, err := s2.Client(t, s2.Token(t, "signer")).Sign(ctx, img1b)
		if !errors.As(err, &ce) || ce.Status != http.StatusServiceUnavailable {
			t.Errorf("signing with the KMS down: %v, want 503", err)
		}
	})
}

func mustSignatures(t *testing.T, c *client.Client, image string) wire.SignaturesResponse {
	t.Helper()
	rep, err := c.Signatures(context.Background(), image)
	if err != nil {
		t.Fatalf("signatures of %s: %v", image, err)
	}
	return rep
}

func allValid(rep wire.SignaturesResponse, key string) bool {
	for _, c := range rep.Signatures {
		if !c.Valid || c.KeyName != key || c.SignedAt == nil {
			return false
		}
	}
	return len(rep.Signatures) > 0
}

func keySet(t *testing.T, s *testenv.Server) wire.KeysResponse {
	t.Helper()
	ks, err := s.Admin.KeySet(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func find(ks []wire.Key, name string) wire.Key {
	for _, k := range ks {
		if k.Name == name {
			return k
		}
	}
	return wire.Key{}
}

// forgeLegacy signs img with key a's private key outside attestd, as a
// thief of the retired key would, and stores it in the legacy layout.
func forgeLegacy(t *testing.T, s *testenv.Server, img name.Digest, meta attest.SignMeta, auth authn.Authenticator) {
	t.Helper()
	pw, err := keys.Password(s.DataDir, "")
	if err != nil {
		t.Fatal(err)
	}
	k, err := keys.LoadFileKey("a", filepath.Join(s.DataDir, keys.PrivateKeyFile), pw)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := attest.SimpleSigning(img, meta)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := k.Sign(context.Background(), payload)
	if err != nil {
		t.Fatal(err)
	}
	regs, err := oci.NewRegistries([]oci.Host{{Name: s.RegistryHost, Auth: auth}}, oci.Options{})
	if err != nil {
		t.Fatal(err)
	}
	v, _ := k.Verifier()
	if _, err := regs.WriteLegacySignature(context.Background(), img, payload, sig, v); err != nil {
		t.Fatal(err)
	}
}

// TestSignatureForAnotherDigestDoesNotCount copies a valid signature of one
// image onto another image: it verifies cryptographically, but it is about
// the first digest, so attestd does not count it for the second.
func TestSignatureForAnotherDigestDoesNotCount(t *testing.T) {
	ctx := context.Background()
	s := testenv.Start(t, nil)
	signer := s.Token(t, "signer")
	auth := &authn.Basic{Username: "ci", Password: signer}
	_, x, _ := testenv.PushRandom(t, s.RegistryHost, "bind/x", auth)
	_, y, _ := testenv.PushRandom(t, s.RegistryHost, "bind/y", auth)
	if _, err := s.Client(t, signer).Sign(ctx, x.String()); err != nil {
		t.Fatal(err)
	}
	regs, err := oci.NewRegistries([]oci.Host{{Name: s.RegistryHost, Auth: auth}}, oci.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, sigs, err := regs.LegacySignatures(ctx, x, 10)
	if err != nil || len(sigs) != 1 {
		t.Fatalf("read x's signature: %v %d", err, len(sigs))
	}
	pw, _ := keys.Password(s.DataDir, "")
	k, err := keys.LoadFileKey("default", filepath.Join(s.DataDir, keys.PrivateKeyFile), pw)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := k.Verifier()
	if _, err := regs.WriteLegacySignature(ctx, y, sigs[0].Payload, sigs[0].Signature, v); err != nil {
		t.Fatal(err)
	}
	rep := mustSignatures(t, s.Client(t, signer), y.String())
	if rep.Verified || len(rep.Signatures) != 1 || !strings.Contains(rep.Signatures[0].Reason, "not about this digest") {
		t.Errorf("x's signature copied onto y: %+v", rep)
	}
	if err := verifyLegacy(ctx, y, loadVerifier(t, s.PublicKeyPEM(t))); err == nil {
		t.Error("the cosign library accepts x's signature for y")
	}
}
