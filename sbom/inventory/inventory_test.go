package inventory

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "attest", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReadSPDXAndCycloneDXAlike(t *testing.T) {
	spdx, err := Read(PredicateSPDX, read(t, "spdx.json"))
	if err != nil {
		t.Fatal(err)
	}
	cdx, err := Read(PredicateCycloneDX, read(t, "cyclonedx.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := Package{PURL: "pkg:maven/org.apache.logging.log4j/log4j-core@2.16.0", Type: "maven", Namespace: "org.apache.logging.log4j", Name: "log4j-core", Version: "2.16.0"}
	if spdx.Format != FormatSPDX || len(spdx.Packages) != 1 || cdx.Format != FormatCycloneDX || len(cdx.Packages) != 1 {
		t.Fatalf("spdx %+v, cyclonedx %+v", spdx, cdx)
	}
	got := spdx.Packages[0]
	if got.Licenses = nil; !reflect.DeepEqual(got, want) || !reflect.DeepEqual(cdx.Packages[0], want) {
		t.Errorf("the same package read differently:\nspdx      %+v\ncyclonedx %+v\nwant      %+v", spdx.Packages[0], cdx.Packages[0], want)
	}
	if l := spdx.Packages[0].Licenses; len(l) != 1 || l[0] != "Apache-2.0" {
		t.Errorf("SPDX licenseConcluded: %v", l)
	}
	if spdx.Packages[0].Base() != "pkg:maven/org.apache.logging.log4j/log4j-core" {
		t.Errorf("base purl %s", spdx.Packages[0].Base())
	}
}

const cdxDoc = `{"bomFormat":"CycloneDX","specVersion":"1.6","version":1,"components":[
 {"type":"library","name":"bash","version":"5.2.15-2+b2","purl":"pkg:deb/debian/bash@5.2.15-2%2Bb2?arch=amd64&distro=debian-12","licenses":[{"license":{"id":"GPL-3.0-or-later"}}]},
 {"type":"library","name":"openssl-libs","version":"3.0.7-27.el9","purl":"pkg:rpm/redhat/openssl-libs@3.0.7-27.el9?epoch=1&arch=x86_64","licenses":[{"expression":"Apache-2.0 AND (MIT OR GPL-2.0-only WITH Classpath-exception-2.0)"}]},
 {"type":"library","group":"org.example","name":"app","version":"1","components":[{"type":"library","name":"left-pad","version":"1.3.0","purl":"pkg:npm/left-pad@1.3.0","licenses":[{"license":{"name":"WTFPL"}}]}]},
 {"type":"library","name":"bash","version":"5.2.15-2+b2","purl":"pkg:deb/debian/bash@5.2.15-2%2Bb2?distro=debian-12&arch=amd64","licenses":[{"license":{"id":"GPL-3.0-or-later"}}]}
]}`

func TestReadCycloneDXDetails(t *testing.T) {
	doc, err := Read(PredicateCycloneDX, []byte(cdxDoc))
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]Package{}
	for _, p := range doc.Packages {
		by[p.Name] = p
	}
	if len(doc.Packages) != 4 { // bash once (its qualifiers in another order), openssl, app, left-pad
		t.Errorf("%d packages: %+v", len(doc.Packages), doc.Packages)
	}
	if b := by["bash"]; b.Version != "5.2.15-2+b2" || b.Type != "deb" || b.Namespace != "debian" || b.PURL != "pkg:deb/debian/bash@5.2.15-2%2Bb2?arch=amd64&distro=debian-12" {
		t.Errorf("bash %+v", b)
	}
	if o := by["openssl-libs"]; o.Version != "1:3.0.7-27.el9" || !reflect.DeepEqual(o.Licenses, []string{"Apache-2.0", "GPL-2.0-only", "MIT"}) {
		t.Errorf("rpm with an epoch and a license expression: %+v", o)
	}
	if l := by["left-pad"]; l.Type != "npm" || l.Licenses[0] != "WTFPL" {
		t.Errorf("a nested component: %+v", l)
	}
	if a := by["org.example/app"]; a.PURL != "" || a.Version != "1" {
		t.Errorf("a component without a purl: %+v", a)
	}
}

func TestReadRefuses(t *testing.T) {
	for name, tc := range map[string]struct {
		pt   string
		body string
		want error
	}{
		"not an SBOM":            {"https://slsa.dev/provenance/v1", `{}`, ErrFormat},
		"SPDX not JSON":          {PredicateSPDX, `not json`, ErrInvalid},
		"SPDX no version":        {PredicateSPDX, `{"packages":[]}`, ErrInvalid},
		"CycloneDX not JSON":     {PredicateCycloneDX, `[`, ErrInvalid},
		"CycloneDX no bomFormat": {PredicateCycloneDX, `{"components":[]}`, ErrInvalid},
		"too many components": {PredicateCycloneDX, `{"bomFormat":"CycloneDX","specVersion":"1.5","components":[` +
			strings.TrimSuffix(strings.Repeat(`{"type":"library","name":"x"},`, MaxPackages+1), ",") + `]}`, ErrInvalid},
	} {
		if _, err := Read(tc.pt, []byte(tc.body)); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
}

func TestParsePURL(t *testing.T) {
	typ, ns, name, v, err := ParsePURL("pkg:deb/debian/bash")
	if err != nil || typ != "deb" || ns != "debian" || name != "bash" || v != "" {
		t.Errorf("%s %s %s %s %v", typ, ns, name, v, err)
	}
	if _, _, name, _, err := ParsePURL("pkg:pypi/Django_Rest"); err != nil || name != "django-rest" {
		t.Errorf("pypi names are normalized: %s %v", name, err)
	}
	if _, _, _, _, err := ParsePURL("deb/debian/bash"); err == nil {
		t.Error("a purl without pkg: parsed")
	}
}
