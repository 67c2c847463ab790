package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/attestd/attestd/storage/archive"
	"github.com/attestd/attestd/storage/oci"
)

type pusher interface {
	PushImage(ctx context.Context, repo name.Repository, tag string, img v1.Image) (oci.Resolved, error)
	PushIndex(ctx context.Context, repo name.Repository, tag string, idx v1.ImageIndex) (oci.Resolved, error)
	PushFile(ctx context.Context, repo name.Repository, tag string, f oci.FileArtifact) (oci.Resolved, error)
}

// Artifacts takes build artifacts in: image archives and plain files,
// pushed to a registry, and images already in one, pinned to their digest.
type Artifacts struct {
	resolve resolver
	push    pusher
	tmp     string
	limits  archive.Limits
	rec     recorder
	log     *slog.Logger
}

// NewArtifacts returns the artifact service. Uploads are spooled under tmp
// within limits.
// Every upload and registration is recorded through rec before it is
// acknowledged.
func NewArtifacts(r resolver, p pusher, tmp string, limits archive.Limits, rec recorder, log *slog.Logger) *Artifacts {
	return &Artifacts{resolve: r, push: p, tmp: tmp, limits: limits, rec: rec, log: log}
}

// Artifact is an artifact pinned to its digest.
type Artifact struct {
	Image     string
	Digest    string
	MediaType string
	Size      int64
	// LogIndex is the upload or registration event's audit log index.
	LogIndex *uint64
}

func artifact(r oci.Resolved) Artifact {
	return Artifact{Image: r.Digest.String(), Digest: r.Digest.DigestStr(), MediaType: string(r.Descriptor.MediaType), Size: r.Descriptor.Size}
}

// Register resolves image to a digest once and returns it; everything after
// uses the digest.
func (a *Artifacts) Register(ctx context.Context, p Principal, image string) (Artifact, error) {
	if err := Authorize(p, ActionSign); err != nil {
		return Artifact{}, err
	}
	subj := SubjectRef{Image: image}
	r, err := pin(ctx, a.resolve, subj, writeScope(p, ActionSign, nil))
	if err != nil {
		return Artifact{}, err
	}
	rec, err := a.rec.Record(ctx, Event{Kind: EventArtifactRegistered, Actor: p, Repository: r.Digest.Context().Name(), Digest: r.Digest.DigestStr(),
		Tags: subjectTags(subj), Detail: map[string]any{"media_type": string(r.Descriptor.MediaType), "size": r.Descriptor.Size}})
	if err != nil {
		return Artifact{}, err
	}
	out := artifact(r)
	out.LogIndex = rec.FirstLogIndex()
	return out, nil
}

// Upload kinds.
const (
	KindImage = "image"
	KindFile  = "file"
)

// UploadRequest is one streamed upload.
type UploadRequest struct {
	// Repository is host/path to push to.
	Repository string
	// Tag is optional; without it the artifact is pushed by digest.
	Tag string
	// Kind is "image" (an OCI layout tar or docker save archive, maybe
	// gzipped) or "file" (stored as it is, as an OCI artifact).
	Kind string
	// Filename, MediaType and ArtifactType describe a file artifact.
	Filename, MediaType, ArtifactType string
	// Body is read once, at most the configured upload size.
	Body io.Reader
}

// Upload spools the body within the limits, checks it whole, and only then
// pushes it: a rejected upload leaves no tag and no manifest behind.
func (a *Artifacts) Upload(ctx context.Context, p Principal, req UploadRequest) (Artifact, error) {
	if err := Authorize(p, ActionPush); err != nil {
		return Artifact{}, err
	}
	if _, err := name.NewRepository(req.Repository, name.StrictValidation); err != nil {
		return Artifact{}, fmt.Errorf("%w: repository %q (host/path, the tag given apart): %w", ErrInvalid, req.Repository, err)
	}
	ref, err := a.resolve.Parse(req.Repository)
	if err != nil {
		return Artifact{}, registryErr(err)
	}
	repo := ref.Context()
	if err := AuthorizeRepository(p, ActionPush, repo.Name()); err != nil {
		return Artifact{}, err
	}
	var res oci.Resolved
	switch req.Kind {
	case KindImage:
		s, err := archive.Spool(req.Body, a.tmp, a.limits, true)
		if err != nil {
			return Artifact{}, uploadErr(err)
		}
		defer s.Close()
		l, err := archive.LoadImage(s, a.limits)
		if err != nil {
			return Artifact{}, uploadErr(err)
		}
		if l.Index != nil {
			res, err = a.push.PushIndex(ctx, repo, req.Tag, l.Index)
		} else {
			res, err = a.push.PushImage(ctx, repo, req.Tag, l.Image)
		}
		if err != nil {
			return Artifact{}, registryErr(err)
		}
	case KindFile:
		if req.MediaType == "" {
			req.MediaType = "application/octet-stream"
		}
		if req.ArtifactType == "" {
			req.ArtifactType = "application/vnd.attestd.file.v1"
		}
		if req.Filename == "" {
			req.Filename = "artifact"
		}
		s, err := archive.Spool(req.Body, a.tmp, a.limits, false)
		if err != nil {
			return Artifact{}, uploadErr(err)
		}
		defer s.Close()
		res, err = a.push.PushFile(ctx, repo, req.Tag, oci.FileArtifact{
			Path: s.Path, Size: s.Size, Digest: s.Digest, Title: req.Filename, MediaType: req.MediaType, ArtifactType: req.ArtifactType,
		})
		if err != nil {
			return Artifact{}, registryErr(err)
		}
	default:
		return Artifact{}, fmt.Errorf("%w: kind %q: want image or file", ErrInvalid, req.Kind)
	}
	var tags []string
	if req.Tag != "" {
		tags = []string{req.Tag}
	}
	rec, err := a.rec.Record(ctx, Event{Kind: EventArtifactUploaded, Actor: p, Repository: repo.Name(), Digest: res.Digest.DigestStr(), Tags: tags,
		Detail: map[string]any{"kind": req.Kind, "media_type": string(res.Descriptor.MediaType), "size": res.Descriptor.Size, "filename": req.Filename}})
	if err != nil {
		return Artifact{}, err // pushed but not recorded: the answer is a 503; a retry pushes the same digest again
	}
	a.log.InfoContext(ctx, "artifact uploaded", "digest", res.Digest.DigestStr(), "repo", repo.Name(), "kind", req.Kind, "caller", p.Name)
	out := artifact(res)
	out.LogIndex = rec.FirstLogIndex()
	return out, nil
}

func uploadErr(err error) error {
	switch {
	case errors.Is(err, archive.ErrTooLarge):
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	case errors.Is(err, archive.ErrBomb), errors.Is(err, archive.ErrUnsafe), errors.Is(err, archive.ErrFormat):
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return err
}
