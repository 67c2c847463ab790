package oci

import (
	"errors"
	"strings"
	"testing"
)

// TestParseRefusesNonCanonicalPaths: every reference whose repository is
// not written in canonical form is refused, before any request.
func TestParseRefusesNonCanonicalPaths(t *testing.T) {
	r, err := NewRegistries([]Host{{Name: "registry.example"}, {Name: "index.docker.io"}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		"registry.example/team-a/../team-b/app:v1",
		"registry.example/team-a/../team-b/app@sha256:" + strings.Repeat("a", 64),
		"registry.example/a//b",
		"registry.example/./a",
		"registry.example/a/.",
		"registry.example/a/..",
		"registry.example/a/",
		"registry.example//a",
		"registry.example/Team/app",
		"REGISTRY.example/team/app",
		"registry.example/a/.../b",
		"registry.example/a/-b",
		"docker.io/library/nginx",
		"index.docker.io/nginx",
	} {
		if _, err := r.Parse(s); !errors.Is(err, ErrBadReference) {
			t.Errorf("Parse(%q) = %v, want ErrBadReference", s, err)
		}
	}
	for _, s := range []string{"registry.example/team-a/app:v1", "registry.example/a.b/c__d/e-f", "index.docker.io/library/nginx:1", "registry.example/a@sha256:" + strings.Repeat("b", 64)} {
		if _, err := r.Parse(s); err != nil {
			t.Errorf("Parse(%q): %v", s, err)
		}
	}
}
