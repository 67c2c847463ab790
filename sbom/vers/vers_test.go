package vers

import (
	"errors"
	"strings"
	"testing"
)

// TestEcosystemOrdering: each scheme orders versions its own way, where a
// string comparison would get it wrong.
func TestEcosystemOrdering(t *testing.T) {
	for _, tc := range []struct {
		scheme, lo, hi string
	}{
		{"deb", "2.0", "1:1.0"},              // the epoch wins
		{"deb", "1.0~rc1", "1.0"},            // a tilde sorts before anything
		{"deb", "5.2.15-2+b2", "99"},         // bash in the SBOM test image
		{"deb", "2.36-9+deb12u4", "2.36-10"}, // revisions compare numerically
		{"rpm", "1.0-1.el8", "1.0-2.el8"},    // release
		{"rpm", "2.0", "1:1.0"},              // epoch
		{"rpm", "1.0~rc1", "1.0"},            // tilde
		{"apk", "1.2.3-r1", "1.2.3-r10"},     // package release numerically
		{"apk", "1.0_rc1", "1.0"},            // suffixes before the release
		{"npm", "1.9.0", "1.10.0"},           // numerically
		{"npm", "1.0.0-rc.1", "1.0.0"},       // a prerelease first
		{"pypi", "1.0rc1", "1.0"},            // PEP 440 pre-release
		{"pypi", "1.0", "1.0.post1"},         // post-release after
		{"pypi", "2.0.dev1", "2.0a1"},        // dev before alpha
		{"maven", "2.14.1", "2.17.1"},        // log4j
		{"maven", "2.17.0", "2.17.1"},        // log4j
		{"maven", "2.0-alpha-1", "2.0"},      // qualifiers before the release
		{"maven", "1.0-SNAPSHOT", "1.0"},     // snapshot before the release
		{"golang", "v0.9.0", "v0.10.0"},      // numerically, with the v
		{"golang", "v1.0.0-rc.1", "v1.0.0"},  // prerelease
		{"cargo", "1.0.0-alpha", "1.0.0"},    // prerelease
		{"cargo", "0.9.9", "0.10.0"},         // numerically
		{"gem", "1.0.0.pre", "1.0.0"},        // a letter makes a prerelease
		{"gem", "1.9", "1.10"},               // numerically
		{"nuget", "1.0.0-beta", "1.0.0"},     // prerelease
		{"nuget", "1.9.0", "1.10.0"},         // numerically
	} {
		n, err := Compare(tc.scheme, tc.lo, tc.hi)
		if err != nil || n != -1 {
			t.Errorf("%s: %s vs %s = %d, %v; want -1", tc.scheme, tc.lo, tc.hi, n, err)
		}
		if n, _ := Compare(tc.scheme, tc.hi, tc.lo); n != 1 {
			t.Errorf("%s: %s vs %s = %d; want 1", tc.scheme, tc.hi, tc.lo, n)
		}
	}
}

func TestContains(t *testing.T) {
	for _, tc := range []struct {
		rng     string
		in, out []string
	}{
		{"vers:deb/<99", []string{"5.2.15-2+b2", "1:0"[2:], "98.9"}, []string{"99", "100", "1:1.0"}},
		{"vers:deb/>=5.2|<5.3", []string{"5.2.15-2+b2", "5.2"}, []string{"5.1.9", "5.3", "5.3~rc1"[0:3]}},
		{"vers:maven/<2.17.1", []string{"2.14.1", "2.17.0", "2.0-beta9"}, []string{"2.17.1", "2.17.2", "3.0"}},
		{"vers:maven/>=2.0-beta9|<2.3.1|>=2.4|<2.12.2|>=2.13.0|<2.15.0", []string{"2.0", "2.3.0", "2.4", "2.12.1", "2.14.1"}, []string{"2.3.1", "2.3.2", "2.12.2", "2.15.0", "1.2"}},
		{"vers:npm/1.2.3|>=2.0.0|<5.0.0", []string{"1.2.3", "2.0.0", "4.9.9"}, []string{"1.2.4", "5.0.0", "1.0.0"}},
		{"vers:npm/>1.0.0|<=2.0.0|!=1.5.0", []string{"1.0.1", "2.0.0"}, []string{"1.0.0", "1.5.0", "2.0.1"}},
		{"vers:pypi/!=1.0", []string{"1.1", "0.9"}, []string{"1.0"}},
		{"vers:pypi/<=1.0|>=2.0", []string{"0.5", "1.0", "2.0", "3"}, []string{"1.5"}},
		{"vers:golang/>=v0.20.0", []string{"v0.22.1"}, []string{"v0.9.0"}},
		{"vers:gem/*", []string{"1.0", "0.0.1.pre"}, nil},
		{"vers:rpm/<1:1.0", []string{"2.0", "0:9.9"}, []string{"1:1.0", "2:0.1"}},
		{"vers:apk/>=1.2.3-r1 | < 1.2.3-r10", []string{"1.2.3-r1", "1.2.3-r9"}, []string{"1.2.3-r10", "1.2.3"}},
		{"vers:cargo/<1.0.0", []string{"1.0.0-alpha", "0.10.0"}, []string{"1.0.0"}},
		{"vers:nuget/>=1.10.0", []string{"1.10.0", "2.0.0"}, []string{"1.9.0", "1.10.0-beta"}},
		{"vers:deb/5.2.15-2%2Bb2", []string{"5.2.15-2+b2"}, []string{"5.2.15-2"}},
	} {
		r, err := Parse(tc.rng)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.rng, err)
			continue
		}
		for _, v := range tc.in {
			if ok, err := r.Contains(v); !ok || err != nil {
				t.Errorf("%s does not contain %s (%v)", tc.rng, v, err)
			}
		}
		for _, v := range tc.out {
			if ok, err := r.Contains(v); ok || err != nil {
				t.Errorf("%s contains %s (%v)", tc.rng, v, err)
			}
		}
	}
}

func TestParseRefuses(t *testing.T) {
	for _, s := range []string{
		"",
		"deb/<99",               // no vers: prefix
		"vers:deb",              // no constraints
		"vers:deb/",             // no constraints
		"vers:swift/<1.0",       // a scheme without an ordering here
		"vers:deb/<",            // no version
		"vers:deb/<1.0|<2.0",    // two upper bounds in a row
		"vers:deb/>1.0|>=2.0",   // two lower bounds in a row
		"vers:deb/1.0|<2.0",     // an = inside the next bound
		"vers:npm/1.0.0|=1.0.0", // a version twice
		"vers:deb/<a:b:c",       // not a Debian version
		"vers:deb/" + strings.Repeat("1|", 600) + "1",
		"vers:npm/" + strings.Repeat(">1|<2|", 40) + ">1",
	} {
		if r, err := Parse(s); err == nil || !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%.60q) = %v, %v; want ErrInvalid", s, r, err)
		}
	}
}

func TestNormalForm(t *testing.T) {
	r, err := Parse("vers:NPM/<5.0.0|>=2.0.0|1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	if got := r.String(); got != "vers:npm/1.2.3|>=2.0.0|<5.0.0" {
		t.Errorf("normal form %s", got)
	}
	if _, err := (&Range{Scheme: "deb"}).Contains("not:a:version"); err == nil {
		t.Error("an unreadable version is not an error")
	}
}
