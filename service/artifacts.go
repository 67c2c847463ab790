package service

import (
	"context"
)

// Artifacts registers artifacts that already live in a registry.
type Artifacts struct {
	resolve resolver
}

// NewArtifacts returns the artifact service.
func NewArtifacts(r resolver) *Artifacts { return &Artifacts{resolve: r} }

// Artifact is an artifact pinned to its digest.
type Artifact struct {
	Image     string
	Digest    string
	MediaType string
	Size      int64
}

// Register resolves image to a digest once and returns it; everything after
// uses the digest.
func (a *Artifacts) Register(ctx context.Context, p Principal, image string) (Artifact, error) {
	if err := Authorize(p, ActionSign); err != nil {
		return Artifact{}, err
	}
	ref, err := a.resolve.Parse(image)
	if err != nil {
		return Artifact{}, registryErr(err)
	}
	r, err := a.resolve.Resolve(ctx, ref)
	if err != nil {
		return Artifact{}, registryErr(err)
	}
	return Artifact{Image: r.Digest.String(), Digest: r.Digest.DigestStr(), MediaType: string(r.Descriptor.MediaType), Size: r.Descriptor.Size}, nil
}
