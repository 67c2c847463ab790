package oci

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

// distributionPathComponent is the path-component rule of the distribution
// reference grammar (github.com/distribution/reference, regexp.go), written
// out here so that the fuzz target does not check Parse against itself.
var distributionPathComponent = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$`)

func FuzzParse(f *testing.F) {
	r, err := NewRegistries([]Host{{Name: "registry.example:5000"}, {Name: "localhost:8080"}}, Options{})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"registry.example:5000/a/b:c", "localhost:8080/x@sha256:" + strings.Repeat("a", 64), "nginx", "evil.example/a", "", "registry.example:5000@evil/a", "REGISTRY.example:5000/a",
		"registry.example:5000/team-a/../team-b/app:v1", "localhost:8080/a//b", "localhost:8080/./a", "localhost:8080/a/", "localhost:8080/A/b", "localhost:8080/a/b.c/d__e-f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ref, err := r.Parse(s)
		if err != nil {
			if !errors.Is(err, ErrBadReference) && !errors.Is(err, ErrHostNotAllowed) {
				t.Fatalf("Parse(%q): unclassified error %v", s, err)
			}
			return
		}
		host := ref.Context().RegistryStr()
		if host != "registry.example:5000" && host != "localhost:8080" {
			t.Fatalf("Parse(%q) accepted host %q", s, host)
		}
		// What is accepted is canonical: the repository is the one written,
		// and every segment of its path is a distribution path component.
		repo := ref.Context().RepositoryStr()
		if !strings.HasPrefix(s, host+"/"+repo) {
			t.Fatalf("Parse(%q) read repository %s/%s, not what was written", s, host, repo)
		}
		for _, seg := range strings.Split(repo, "/") {
			if seg == "" || seg == "." || seg == ".." || !distributionPathComponent.MatchString(seg) {
				t.Fatalf("Parse(%q) accepted repository path %q with segment %q", s, repo, seg)
			}
		}
	})
}

func TestParseRefusesUnconfiguredHosts(t *testing.T) {
	r, err := NewRegistries([]Host{{Name: "registry.example"}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"nginx", "docker.io/library/nginx", "evil.example/registry.example/a", "registry.example.evil.com/a"} {
		if _, err := r.Parse(s); !errors.Is(err, ErrHostNotAllowed) {
			t.Errorf("Parse(%q) = %v, want ErrHostNotAllowed", s, err)
		}
	}
	if _, err := r.Parse("registry.example/a/b:1"); err != nil {
		t.Errorf("configured host refused: %v", err)
	}
	if _, err := NewRegistries([]Host{{Name: "a/b"}}, Options{}); err == nil {
		t.Error("host with a path accepted")
	}
}
