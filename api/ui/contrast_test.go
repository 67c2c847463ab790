package ui

import (
	"math"
	"strconv"
	"strings"
	"testing"
)

// luminance is WCAG 2's relative luminance of a #rrggbb colour.
func luminance(t *testing.T, hex string) float64 {
	t.Helper()
	v, err := strconv.ParseUint(strings.TrimPrefix(hex, "#"), 16, 32)
	if err != nil || len(hex) != 7 {
		t.Fatalf("colour %q", hex)
	}
	var l [3]float64
	for i, shift := range []uint{16, 8, 0} {
		c := float64((v>>shift)&0xff) / 255
		if c <= 0.04045 {
			l[i] = c / 12.92
		} else {
			l[i] = math.Pow((c+0.055)/1.055, 2.4)
		}
	}
	return 0.2126*l[0] + 0.7152*l[1] + 0.0722*l[2]
}

// TestContrastAA checks every text colour of the stylesheet against the
// backgrounds it is drawn on: at least 4.5:1 (WCAG AA, normal text).
func TestContrastAA(t *testing.T) {
	css, err := staticFS.ReadFile("static/style.css")
	if err != nil {
		t.Fatal(err)
	}
	pairs := []struct{ what, fg, bg string }{
		{"body text", "#1a1a1a", "#ffffff"},
		{"links", "#0b4f8a", "#ffffff"},
		{"links in the header", "#0b4f8a", "#f2f4f7"},
		{"button", "#ffffff", "#0b4f8a"},
		{"error", "#8a1414", "#fdecec"},
		{"ok", "#14561a", "#e9f5ea"},
		{"meta", "#3d4550", "#f7f8fa"},
		{"pre", "#1a1a1a", "#f2f4f7"},
		{"timeline", "#1a1a1a", "#f7f8fa"},
	}
	for _, fill := range []string{"#eef1f5", "#e8effa", "#f3ecfa", "#e9f5ea", "#fdf4e3", "#fdecec"} {
		pairs = append(pairs, struct{ what, fg, bg string }{"graph node " + fill, "#1a1a1a", fill})
	}
	for _, p := range pairs {
		for _, c := range []string{p.fg, p.bg} {
			if !strings.Contains(string(css), c) {
				t.Errorf("%s: %s is not in the stylesheet (update this test with it)", p.what, c)
			}
		}
		a, b := luminance(t, p.fg), luminance(t, p.bg)
		ratio := (math.Max(a, b) + 0.05) / (math.Min(a, b) + 0.05)
		if ratio < 4.5 {
			t.Errorf("%s: %s on %s is %.2f:1, under WCAG AA's 4.5:1", p.what, p.fg, p.bg, ratio)
		}
	}
}
