package inventory

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzRead: any bytes are read or refused, never a panic, and what is read
// is bounded and names every package.
func FuzzRead(f *testing.F) {
	for _, n := range []string{"spdx.json", "cyclonedx.json"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "attest", "testdata", n))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(n == "spdx.json", b)
	}
	f.Add(false, []byte(cdxDoc))
	f.Fuzz(func(t *testing.T, spdx bool, b []byte) {
		pt := PredicateCycloneDX
		if spdx {
			pt = PredicateSPDX
		}
		doc, err := Read(pt, b)
		if err != nil {
			return
		}
		if len(doc.Packages) > MaxPackages {
			t.Fatalf("%d packages", len(doc.Packages))
		}
		for _, p := range doc.Packages {
			if p.Name == "" {
				t.Fatalf("a package without a name: %+v", p)
			}
		}
	})
}
