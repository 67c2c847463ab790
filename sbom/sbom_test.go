package sbom_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/anchore/stereoscope/pkg/image"
	"github.com/anchore/syft/syft"
	syftsbom "github.com/anchore/syft/syft/sbom"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/attestd/attestd/internal/testenv"
	"github.com/attestd/attestd/sbom"
)

// TestCatalogSameAsSyft catalogs the small test image and a Debian minbase
// root filesystem with Catalog, twice at once (one license scanner shared
// between catalogs), and checks the packages, with their licenses, against
// syft used plainly (a scanner of its own per catalog) and, where
// ATTESTD_SYFT names the syft CLI, the SPDX packages against the CLI's.
func TestCatalogSameAsSyft(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	reg := sbom.Registry{Host: host, Insecure: true}
	for _, tc := range []struct {
		name string
		img  func(testing.TB) v1.Image
		min  int
	}{
		{"small", testenv.SBOMImage, 7},
		{"minbase", testenv.DebianMinbaseImage, 80},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			img := tc.img(t)
			tag, _ := name.NewTag(host + "/sbom/" + tc.name + ":1")
			if err := remote.Write(tag, img); err != nil {
				t.Fatal(err)
			}
			h, _ := img.Digest()
			ref := tag.Context().Digest(h.String()).String()
			// Twice at once: both use the one license scanner.
			var two [2][]string
			var wg sync.WaitGroup
			for i := range two {
				wg.Go(func() {
					s, err := sbom.Catalog(ctx, ref, reg)
					if err != nil {
						t.Error(err)
						return
					}
					two[i] = packages(s)
				})
			}
			wg.Wait()
			got := two[0]
			if !slices.Equal(two[0], two[1]) {
				t.Fatalf("two catalogs differ:\n%v\n%v", two[0], two[1])
			}
			if len(got) < tc.min {
				t.Fatalf("%d packages, want at least %d: %v", len(got), tc.min, got)
			}
			src, err := syft.GetSource(ctx, ref, syft.DefaultGetSourceConfig().WithSources("registry").WithRegistryOptions(&image.RegistryOptions{InsecureUseHTTP: true}))
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = src.Close() }()
			plain, err := syft.CreateSBOM(ctx, src, nil)
			if err != nil {
				t.Fatal(err)
			}
			if want := packages(plain); !slices.Equal(got, want) {
				t.Errorf("packages differ from plain syft's:\ngot  %d %v\nwant %d %v", len(got), got, len(want), want)
			}
			cli := os.Getenv("ATTESTD_SYFT")
			if cli == "" {
				return
			}
			s, err := sbom.Catalog(ctx, ref, reg)
			if err != nil {
				t.Fatal(err)
			}
			ours, err := sbom.Encode(s, sbom.SPDXJSON)
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(cli, "scan", "registry:"+ref, "-o", "spdx-json", "-q")
			cmd.Env = append(os.Environ(), "SYFT_REGISTRY_INSECURE_USE_HTTP=true", "SYFT_CHECK_FOR_APP_UPDATE=false")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			theirs, err := cmd.Output()
			if err != nil {
				t.Fatalf("syft: %v\n%s", err, stderr.String())
			}
			if g, w := spdxPackages(t, ours), spdxPackages(t, theirs); !slices.Equal(g, w) {
				t.Errorf("SPDX packages differ from the syft CLI's:\ngot  %d %v\nwant %d %v", len(g), g, len(w), w)
			}
		})
	}
}

// packages lists an SBOM's packages, with their locations and licenses.
func packages(s *syftsbom.SBOM) []string {
	var out []string
	for p := range s.Artifacts.Packages.Enumerate() {
		var lic []string
		for _, l := range p.Licenses.ToSlice() {
			lic = append(lic, l.Value+"/"+l.SPDXExpression)
		}
		var locs []string
		for _, l := range p.Locations.ToSlice() {
			locs = append(locs, l.RealPath)
		}
		out = append(out, fmt.Sprintf("%s %s %s %s %v %v", p.Type, p.Name, p.Version, p.PURL, locs, lic))
	}
	slices.Sort(out)
	return out
}

// spdxPackages lists an SPDX document's packages by name, version and
// licenses.
func spdxPackages(t *testing.T, doc []byte) []string {
	t.Helper()
	var d struct {
		Packages []struct {
			Name, VersionInfo, LicenseDeclared, LicenseConcluded string
		}
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range d.Packages {
		out = append(out, p.Name+" "+p.VersionInfo+" "+p.LicenseDeclared+" "+p.LicenseConcluded)
	}
	slices.Sort(out)
	return out
}
