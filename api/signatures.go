package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/service"
)

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
		out := wire.SignResponse{Image: res.Image, Digest: res.Digest, KeyID: res.KeyID, KeyName: res.KeyName, KeyVersion: res.KeyVersion, LogIndex: res.LogIndex}
		for _, l := range res.Locations {
			out.Locations = append(out.Locations, wire.Location{Kind: l.Kind, Ref: l.Ref, Tag: l.Tag, Existed: l.Existed, Content: l.Content})
		}
		return c.JSON(http.StatusOK, out)
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
