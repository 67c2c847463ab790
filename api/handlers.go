package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/service"
)

// decode reads one JSON object into v, refusing unknown fields and trailing
// data. The body is already capped by the BodyLimit middleware.
func decode(c echo.Context, v any) error {
	dec := json.NewDecoder(c.Request().Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var he *echo.HTTPError
		if errors.As(err, &he) {
			return he // over the body limit
		}
		return fmt.Errorf("%w: %s", errMalformedJSON, err.Error())
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var he *echo.HTTPError
		if errors.As(err, &he) {
			return he
		}
		return fmt.Errorf("%w: trailing data after the JSON object", errMalformedJSON)
	}
	return nil
}

func health(c echo.Context) error {
	return c.JSON(http.StatusOK, wire.Health{Status: "ok"})
}

func ready(checks []Check) echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx, cancel := context.WithTimeout(c.Request().Context(), 3*time.Second)
		defer cancel()
		out := wire.Health{Status: "ok", Checks: map[string]string{}}
		status := http.StatusOK
		for _, ch := range checks {
			if err := ch.Fn(ctx); err != nil {
				out.Checks[ch.Name] = "failing"
				out.Status = "unavailable"
				status = http.StatusServiceUnavailable
				continue
			}
			out.Checks[ch.Name] = "ok"
		}
		return c.JSON(status, out)
	}
}

func sign(s *service.Signing) echo.HandlerFunc {
	return func(c echo.Context) error {
		var req wire.SignRequest
		if err := decode(c, &req); err != nil {
			return err
		}
		res, err := s.Sign(c.Request().Context(), principal(c), service.SignRequest{Image: req.Image, Key: req.Key})
		if err != nil {
			return err
		}
		out := wire.SignResponse{Image: res.Image, Digest: res.Digest, KeyID: res.KeyID, KeyName: res.KeyName, KeyVersion: res.KeyVersion}
		for _, l := range res.Locations {
			out.Locations = append(out.Locations, wire.Location{Kind: l.Kind, Ref: l.Ref, Tag: l.Tag, Existed: l.Existed})
		}
		return c.JSON(http.StatusOK, out)
	}
}

func wireKeys(ks service.KeySet) wire.KeysResponse {
	out := wire.KeysResponse{Revision: ks.Revision, Keys: []wire.Key{}}
	for _, x := range ks.Keys {
		out.Keys = append(out.Keys, wire.Key{ID: x.ID, Name: x.Name, Ref: x.Ref, Version: x.Version, State: x.State, Default: x.Default, CanSign: x.CanSign,
			Repositories: x.Repositories, NotBefore: x.NotBefore, NotAfter: x.NotAfter, RevokedAt: x.RevokedAt, Reason: x.Reason, PublicKey: x.PublicKey})
	}
	return out
}

func listKeys(k *service.KeyLifecycle) echo.HandlerFunc {
	return func(c echo.Context) error {
		return c.JSON(http.StatusOK, wireKeys(k.List()))
	}
}

func activateKey(k *service.KeyLifecycle) echo.HandlerFunc {
	return func(c echo.Context) error {
		ks, err := k.Activate(c.Request().Context(), principal(c), c.Param("name"))
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, wireKeys(ks))
	}
}

func revokeKey(k *service.KeyLifecycle) echo.HandlerFunc {
	return func(c echo.Context) error {
		var req wire.RevokeKeyRequest
		if err := decode(c, &req); err != nil {
			return err
		}
		ks, err := k.Revoke(c.Request().Context(), principal(c), c.Param("name"), req.Reason)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, wireKeys(ks))
	}
}

func signatures(v *service.Verification) echo.HandlerFunc {
	return func(c echo.Context) error {
		rep, err := v.Signatures(c.Request().Context(), principal(c), c.QueryParam("image"))
		if err != nil {
			return err
		}
		out := wire.SignaturesResponse{Image: rep.Image, Digest: rep.Digest, KeySetRevision: rep.KeySetRevision, Verified: rep.Verified, Signatures: []wire.SignatureCheck{}}
		for _, x := range rep.Signatures {
			out.Signatures = append(out.Signatures, wire.SignatureCheck{Format: x.Format, Ref: x.Ref, KeyID: x.KeyID, KeyName: x.KeyName, KeyVersion: x.KeyVersion, SignedAt: x.SignedAt, Valid: x.Valid, Reason: x.Reason})
		}
		return c.JSON(http.StatusOK, out)
	}
}

func createToken(t *service.Tokens) echo.HandlerFunc {
	return func(c echo.Context) error {
		var req wire.CreateTokenRequest
		if err := decode(c, &req); err != nil {
			return err
		}
		secret, info, err := t.Create(c.Request().Context(), req.Name, req.Roles, req.Repositories)
		if err != nil {
			return err
		}
		tok := wireToken(info)
		tok.Secret = secret
		return c.JSON(http.StatusCreated, tok)
	}
}

func listTokens(t *service.Tokens) echo.HandlerFunc {
	return func(c echo.Context) error {
		ts, err := t.List(c.Request().Context())
		if err != nil {
			return err
		}
		out := wire.TokensResponse{Tokens: []wire.Token{}}
		for _, x := range ts {
			out.Tokens = append(out.Tokens, wireToken(x))
		}
		return c.JSON(http.StatusOK, out)
	}
}

func revokeToken(t *service.Tokens) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := t.Revoke(c.Request().Context(), c.Param("id")); err != nil {
			return err
		}
		return c.NoContent(http.StatusNoContent)
	}
}

func wireToken(x service.TokenInfo) wire.Token {
	return wire.Token{ID: x.ID, Name: x.Name, Roles: x.Roles, Repositories: x.Repositories, CreatedAt: x.CreatedAt, RevokedAt: x.RevokedAt}
}

// trustedRootJSON is a sigstore trusted root with no CA, log or timestamp
// authority: attestd signs with keys and publishes no transparency log
// entries. cosign v2.6 needs it (--trusted-root) to verify a bundle with --key.
const trustedRootJSON = `{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`

func trustedRoot(c echo.Context) error {
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, []byte(trustedRootJSON))
}
