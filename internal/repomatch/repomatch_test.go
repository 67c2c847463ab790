package repomatch

import "testing"

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, repo string
		want          bool
	}{
		{"reg.example/team/*", "reg.example/team/app", true},
		{"reg.example/team/*", "reg.example/team/app/sub", false},
		{"*/release/**", "localhost:5000/release/a/b", true},
		{"*/release/**", "localhost:5000/release", false},
		{"reg.example/team/**", "evil.example/reg.example/team/a", false},
		{"[", "x", false},
		{"**", "localhost:5000/any/depth/x", true},
		{"**", "", false},
	} {
		if got := Match(tc.pattern, tc.repo); got != tc.want {
			t.Errorf("Match(%q, %q) = %v", tc.pattern, tc.repo, got)
		}
	}
	if Valid("") || Valid("[") || !Valid("a/**") {
		t.Error("Valid")
	}
}
