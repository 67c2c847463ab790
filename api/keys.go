package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/service"
)

func wireKeys(ks service.KeySet) wire.KeysResponse {
	out := wire.KeysResponse{Revision: ks.Revision, Keys: []wire.Key{}, LogIndex: ks.LogIndex}
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

// trustedRootJSON is a sigstore trusted root with no CA, log or timestamp
// authority: attestd signs with keys and publishes no transparency log
// entries. cosign v2.6 needs it (--trusted-root) to verify a bundle with --key.
const trustedRootJSON = `{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`

func trustedRoot(c echo.Context) error {
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, []byte(trustedRootJSON))
}
