package vers

import "testing"

// FuzzParse: any range either parses or is refused with ErrInvalid; a
// parsed range keeps its normal form through a second parse, and testing
// any version against it neither panics nor both matches and errs.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"vers:deb/<99", "vers:maven/>=2.0-beta9|<2.3.1|>=2.4|<2.12.2", "vers:npm/1.2.3|>=2.0.0|<5.0.0",
		"vers:pypi/!=1.0", "vers:golang/*", "vers:rpm/<1:1.0", "vers:apk/>=1.2.3-r1|<1.2.3-r10", "vers:gem/<1.0.0.pre", "vers:nuget/>1.0.0-beta", "vers:cargo/<=0.1|>0.2"} {
		f.Add(s, "1.0")
	}
	f.Fuzz(func(t *testing.T, s, version string) {
		r, err := Parse(s)
		if err != nil {
			return
		}
		again, err := Parse(r.String())
		if err != nil {
			t.Fatalf("the normal form %q of %q does not parse: %v", r.String(), s, err)
		}
		if again.String() != r.String() {
			t.Fatalf("normal form drifts: %q then %q", r.String(), again.String())
		}
		if in, err := r.Contains(version); in && err != nil {
			t.Fatalf("%q both contains %q and fails: %v", s, version, err)
		}
	})
}
