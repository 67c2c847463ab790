// Package inventory reads the packages an SBOM lists, for the package
// index: SPDX JSON through spdx/tools-golang, CycloneDX JSON through
// cyclonedx-go. Each package keeps its purl, type (the purl type: the
// ecosystem), namespace, name, version and licenses (SPDX ids).
//
// It is pure and light (it is fuzzed): bytes in, packages out. It MUST NOT
// do I/O, and it bounds what one document may make it hold.
package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	cdx "github.com/CycloneDX/cyclonedx-go"
	packageurl "github.com/package-url/packageurl-go"
	spdxjson "github.com/spdx/tools-golang/json"
)

// Predicate types of the SBOM formats read here.
const (
	PredicateSPDX      = "https://spdx.dev/Document"
	PredicateCycloneDX = "https://cyclonedx.org/bom"
)

// Formats, as the index names them.
const (
	FormatSPDX      = "spdx"
	FormatCycloneDX = "cyclonedx"
)

// MaxPackages caps the packages one document may list.
const MaxPackages = 100_000

// Errors.
var (
	// ErrFormat means the predicate type is not an SBOM format read here.
	ErrFormat = errors.New("not an SBOM format")
	// ErrInvalid means the document does not parse, or is over MaxPackages.
	ErrInvalid = errors.New("invalid SBOM")
)

// Package is one package an SBOM lists.
type Package struct {
	// PURL is the package URL in canonical form (qualifiers sorted), or ""
	// where the SBOM gives none.
	PURL string
	// Type is the purl type (deb, npm, maven …), or "" without a purl.
	Type      string
	Namespace string
	Name      string
	// Version is as the ecosystem orders it: for rpm, the purl's epoch
	// qualifier is put in front ("1:1.2-3").
	Version string
	// Licenses are the SPDX license ids (or LicenseRef-…, or a CycloneDX
	// license name) the SBOM gives for it, sorted, without NOASSERTION.
	Licenses []string
}

// Document is what one SBOM says.
type Document struct {
	Format   string
	Packages []Package
}

// IsSBOM reports whether predicateType is an SBOM format read here.
func IsSBOM(predicateType string) bool {
	return predicateType == PredicateSPDX || predicateType == PredicateCycloneDX
}

// Read reads the packages of an SBOM predicate of predicateType. Packages
// listed twice (the same purl, or name and version) are listed once.
func Read(predicateType string, predicate []byte) (Document, error) {
	var doc Document
	var err error
	switch predicateType {
	case PredicateSPDX:
		doc, err = readSPDX(predicate)
	case PredicateCycloneDX:
		doc, err = readCycloneDX(predicate)
	default:
		return Document{}, fmt.Errorf("%w: %s", ErrFormat, predicateType)
	}
	if err != nil {
		return Document{}, err
	}
	doc.Packages = dedupe(doc.Packages)
	return doc, nil
}

func readSPDX(b []byte) (Document, error) {
	d, err := spdxjson.Read(bytes.NewReader(b))
	if err != nil {
		return Document{}, fmt.Errorf("%w: SPDX: %w", ErrInvalid, err)
	}
	if len(d.Packages) > MaxPackages {
		return Document{}, fmt.Errorf("%w: %d packages, more than %d", ErrInvalid, len(d.Packages), MaxPackages)
	}
	out := Document{Format: FormatSPDX, Packages: make([]Package, 0, len(d.Packages))}
	for _, p := range d.Packages {
		if p == nil {
			continue
		}
		purl := ""
		for _, r := range p.PackageExternalReferences {
			if r != nil && r.RefType == "purl" {
				purl = r.Locator
				break
			}
		}
		lic := licenseIDs(p.PackageLicenseConcluded)
		if len(lic) == 0 {
			lic = licenseIDs(p.PackageLicenseDeclared)
		}
		if pk, ok := newPackage(purl, p.PackageName, p.PackageVersion, lic); ok {
			out.Packages = append(out.Packages, pk)
		}
	}
	return out, nil
}

func readCycloneDX(b []byte) (Document, error) {
	var bom cdx.BOM
	if err := cdx.NewBOMDecoder(bytes.NewReader(b), cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
		return Document{}, fmt.Errorf("%w: CycloneDX: %w", ErrInvalid, err)
	}
	if bom.BOMFormat != "CycloneDX" {
		return Document{}, fmt.Errorf("%w: CycloneDX: bomFormat is %q", ErrInvalid, bom.BOMFormat)
	}
	out := Document{Format: FormatCycloneDX}
	// Components nest; walk them without recursion, bounded.
	var stack [][]cdx.Component
	if bom.Components != nil {
		stack = append(stack, *bom.Components)
	}
	seen := 0
	for len(stack) > 0 {
		cs := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, c := range cs {
			if seen++; seen > MaxPackages {
				return Document{}, fmt.Errorf("%w: more than %d components", ErrInvalid, MaxPackages)
			}
			if c.Components != nil {
				stack = append(stack, *c.Components)
			}
			var lic []string
			if c.Licenses != nil {
				for _, l := range *c.Licenses {
					switch {
					case l.License != nil && l.License.ID != "":
						lic = append(lic, l.License.ID)
					case l.License != nil && l.License.Name != "":
						lic = append(lic, l.License.Name)
					case l.Expression != "":
						lic = append(lic, licenseIDs(l.Expression)...)
					}
				}
			}
			name := c.Name
			if c.Group != "" {
				name = c.Group + "/" + c.Name
			}
			if pk, ok := newPackage(c.PackageURL, name, c.Version, lic); ok {
				out.Packages = append(out.Packages, pk)
			}
		}
	}
	return out, nil
}

// newPackage makes a package from what an SBOM says: the purl decides the
// type, namespace, name and version where there is one that parses.
func newPackage(purl, name, version string, licenses []string) (Package, bool) {
	p := Package{Name: name, Version: version, Licenses: normLicenses(licenses)}
	if purl != "" {
		if u, err := packageurl.FromString(purl); err == nil {
			p.PURL = u.ToString()
			p.Type, p.Namespace, p.Name = strings.ToLower(u.Type), u.Namespace, u.Name
			if u.Version != "" {
				p.Version = u.Version
			}
			if p.Type == "rpm" {
				if e := u.Qualifiers.Map()["epoch"]; e != "" && e != "0" && !strings.Contains(p.Version, ":") {
					p.Version = e + ":" + p.Version
				}
			}
		}
	}
	if p.Name == "" {
		return Package{}, false
	}
	return p, true
}

// Base is a purl without version, qualifiers and subpath
// ("pkg:deb/debian/bash"): a package whatever its version.
func (p Package) Base() string {
	if p.Type == "" {
		return ""
	}
	return Base(p.Type, p.Namespace, p.Name)
}

// Base returns the purl of a package without its version.
func Base(typ, namespace, name string) string {
	u := packageurl.PackageURL{Type: typ, Namespace: namespace, Name: name}
	return u.ToString()
}

// ParsePURL reads a purl as a query gives it: the type, namespace and name,
// and the version if it has one.
func ParsePURL(s string) (typ, namespace, name, version string, err error) {
	if len(s) > 2048 {
		return "", "", "", "", fmt.Errorf("purl longer than 2048 characters")
	}
	u, err := packageurl.FromString(s)
	if err != nil {
		return "", "", "", "", err
	}
	if err := u.Normalize(); err != nil {
		return "", "", "", "", err
	}
	return strings.ToLower(u.Type), u.Namespace, u.Name, u.Version, nil
}

// licenseIDs splits an SPDX license expression into its license ids.
// NOASSERTION and NONE are not licenses.
func licenseIDs(expr string) []string {
	f := strings.FieldsFunc(expr, func(r rune) bool { return r == '(' || r == ')' || r == ' ' || r == '\t' || r == '\n' })
	var out []string
	for i := 0; i < len(f); i++ {
		t := f[i]
		switch strings.ToUpper(t) {
		case "AND", "OR", "NOASSERTION", "NONE", "":
			continue
		case "WITH": // an exception belongs to the license before it
			i++
			continue
		}
		out = append(out, strings.TrimSuffix(t, "+"))
	}
	return out
}

func normLicenses(ls []string) []string {
	var out []string
	for _, l := range ls {
		if l = strings.TrimSpace(l); l != "" && len(l) <= 256 && !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	if len(out) > 32 {
		out = out[:32]
	}
	return out
}

func dedupe(ps []Package) []Package {
	seen := make(map[string]bool, len(ps))
	out := ps[:0]
	for _, p := range ps {
		k := p.PURL + "\x00" + p.Name + "\x00" + p.Version + "\x00" + strings.Join(p.Licenses, ",")
		if p.PURL != "" {
			k = p.PURL + "\x00" + strings.Join(p.Licenses, ",")
		}
		if !seen[k] {
			seen[k] = true
			out = append(out, p)
		}
	}
	return out
}
