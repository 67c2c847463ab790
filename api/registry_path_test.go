package api

import "testing"

func TestCanonicalRegistryPath(t *testing.T) {
	for p, want := range map[string]bool{
		"/v2":                         true,
		"/v2/":                        true,
		"/v2/_catalog":                true,
		"/v2/a/b/manifests/v1":        true,
		"/v2/a/b/blobs/uploads/":      true,
		"/v2/a/b/blobs/uploads/123":   true,
		"/v2/a/../b/manifests/x":      false,
		"/v2/../a/manifests/x":        false,
		"/v2/./a/manifests/x":         false,
		"/v2/a/./manifests/x":         false,
		"/v2/a//b/manifests/x":        false,
		"/v2//a/manifests/x":          false,
		"/v2/a/b/manifests/..":        false,
		"/v2/a/b/blobs/uploads/../..": false,
	} {
		if got := canonicalRegistryPath(p); got != want {
			t.Errorf("canonicalRegistryPath(%q) = %v, want %v", p, got, want)
		}
	}
}
