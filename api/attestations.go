package api

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/service"
)

func subjectRef(s wire.Subject) service.SubjectRef {
	return service.SubjectRef{Image: s.Image, Repository: s.Repository, Digest: s.Digest}
}

func wireAttest(r service.AttestResult) wire.AttestResponse {
	out := wire.AttestResponse{Digest: r.Digest, Subjects: r.Subjects, PredicateType: r.PredicateType, KeyID: r.KeyID, KeyName: r.KeyName, SignedAt: r.SignedAt,
		LogIndexes: r.LogIndex}
	if len(r.LogIndex) > 0 {
		out.LogIndex = &r.LogIndex[0]
	}
	for _, l := range r.Locations {
		out.Locations = append(out.Locations, wire.Location{Kind: l.Kind, Ref: l.Ref, Tag: l.Tag, Existed: l.Existed, Content: l.Content})
	}
	return out
}

func attestHandler(a *service.Attestations) echo.HandlerFunc {
	return func(c echo.Context) error {
		var req wire.AttestRequest
		if err := decode(c, &req); err != nil {
			return err
		}
		res, err := a.Attest(c.Request().Context(), principal(c), service.AttestRequest{
			Subject: subjectRef(req.Subject), PredicateType: req.PredicateType, Predicate: req.Predicate, Key: req.Key,
		})
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, wireAttest(res))
	}
}

func provenance(a *service.Attestations) echo.HandlerFunc {
	return func(c echo.Context) error {
		var req wire.ProvenanceRequest
		if err := decode(c, &req); err != nil {
			return err
		}
		sr := service.ProvenanceRequest{
			SourceRepository: req.Source.Repository, SourceCommit: req.Source.Commit, SourceRef: req.Source.Ref,
			BuildType: req.BuildType, Parameters: req.Parameters, StartedOn: req.StartedOn, FinishedOn: req.FinishedOn,
			InvocationID: c.Response().Header().Get(echo.HeaderXRequestID), Key: req.Key,
		}
		for _, s := range req.Subjects {
			sr.Subjects = append(sr.Subjects, subjectRef(s))
		}
		for _, m := range req.Materials {
			sr.Materials = append(sr.Materials, service.Material{URI: m.URI, Digest: m.Digest})
		}
		res, err := a.Provenance(c.Request().Context(), principal(c), sr)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, wireAttest(res))
	}
}

func listAttestations(a *service.Attestations) echo.HandlerFunc {
	return func(c echo.Context) error {
		s := service.SubjectRef{Repository: c.QueryParam("repository"), Digest: c.Param("digest")}
		list, err := a.List(c.Request().Context(), principal(c), s, c.QueryParam("predicate_type"))
		if err != nil {
			return err
		}
		out := wire.AttestationsResponse{Digest: list.Digest, KeySetRevision: list.KeySetRevision, Attestations: []wire.Attestation{}}
		for _, x := range list.Attestations {
			out.Attestations = append(out.Attestations, wire.Attestation{Format: x.Format, Ref: x.Ref, PredicateType: x.PredicateType,
				KeyID: x.KeyID, KeyName: x.KeyName, KeyVersion: x.KeyVersion, SignedAt: x.SignedAt, Origin: x.Origin, Valid: x.Valid, Reason: x.Reason, Envelope: x.Envelope})
		}
		return c.JSON(http.StatusOK, out)
	}
}

// artifacts registers an image by reference (a JSON body) or takes a
// streamed upload (any other body), as ?kind=image|file&repository=…
func artifacts(a *service.Artifacts, jsonLimit echo.MiddlewareFunc, maxUpload int64) echo.HandlerFunc {
	register := jsonLimit(registerArtifact(a))
	return func(c echo.Context) error {
		req := c.Request()
		if strings.HasPrefix(req.Header.Get(echo.HeaderContentType), echo.MIMEApplicationJSON) {
			return register(c)
		}
		if req.ContentLength > maxUpload {
			return echo.ErrStatusRequestEntityTooLarge
		}
		q := c.QueryParams()
		res, err := a.Upload(req.Context(), principal(c), service.UploadRequest{
			Repository: q.Get("repository"), Tag: q.Get("tag"), Kind: q.Get("kind"),
			Filename: q.Get("filename"), MediaType: q.Get("media_type"), ArtifactType: q.Get("artifact_type"),
			Body: req.Body,
		})
		if err != nil {
			return err
		}
		return c.JSON(http.StatusCreated, wire.ArtifactResponse{Image: res.Image, Digest: res.Digest, MediaType: res.MediaType, Size: res.Size, LogIndex: res.LogIndex})
	}
}

func registerArtifact(a *service.Artifacts) echo.HandlerFunc {
	return func(c echo.Context) error {
		var req wire.RegisterRequest
		if err := decode(c, &req); err != nil {
			return err
		}
		r, err := a.Register(c.Request().Context(), principal(c), req.Image)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, wire.ArtifactResponse{Image: r.Image, Digest: r.Digest, MediaType: r.MediaType, Size: r.Size, LogIndex: r.LogIndex})
	}
}
