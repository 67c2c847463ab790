package api

import (
	"bytes"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/attestd/attestd/service"
)

// EvidencePackType is the media type of an evidence pack.
const EvidencePackType = "application/vnd.attestd.evidence-pack.v1+tar"

// exportEvidence answers GET /v1/artifacts/{digest}/evidence?repository=…
// with the digest's evidence pack, a signed tar.
func exportEvidence(x *service.Exports) echo.HandlerFunc {
	return func(c echo.Context) error {
		s := service.SubjectRef{Repository: c.QueryParam("repository"), Digest: c.Param("digest")}
		var buf bytes.Buffer
		if err := x.Export(c.Request().Context(), principal(c), s, &buf); err != nil {
			return err
		}
		c.Response().Header().Set("Content-Disposition", `attachment; filename="evidence.tar"`)
		return c.Blob(http.StatusOK, EvidencePackType, buf.Bytes())
	}
}
