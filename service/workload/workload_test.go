package workload

import (
	"errors"
	"strings"
	"testing"
)

func TestImages(t *testing.T) {
	pod := `{"spec":{"initContainers":[{"name":"i","image":"r/i@sha256:1"}],"containers":[{"name":"c","image":"r/c:v1"}],"ephemeralContainers":[{"name":"e","image":"r/e"}]}}`
	got, err := Images("", "Pod", []byte(pod))
	if err != nil {
		t.Fatal(err)
	}
	want := []Image{{"/spec/initContainers/0/image", "r/i@sha256:1"}, {"/spec/containers/0/image", "r/c:v1"}, {"/spec/ephemeralContainers/0/image", "r/e"}}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("image %d: %v, want %v", i, got[i], want[i])
		}
	}
	cron := `{"spec":{"jobTemplate":{"spec":{"template":{"spec":{"containers":[{"name":"c","image":"r/c"}]}}}}}}`
	if got, err := Images("batch", "CronJob", []byte(cron)); err != nil || got[0].Path != "/spec/jobTemplate/spec/template/spec/containers/0/image" {
		t.Errorf("CronJob: %v %v", got, err)
	}

	many := `{"spec":{"containers":[` + strings.Repeat(`{"name":"c","image":"r/c"},`, MaxImages) + `{"name":"c","image":"r/c"}]}}`
	for name, tc := range map[string]struct {
		group, kind, raw string
		want             error
	}{
		"no object":             {"", "Pod", "", ErrMalformed},
		"null":                  {"", "Pod", "null", ErrMalformed},
		"no spec":               {"", "Pod", `{"metadata":{"name":"p"}}`, ErrMalformed},
		"deployment no spec":    {"apps", "Deployment", `{"metadata":{}}`, ErrMalformed},
		"not an object":         {"", "Pod", `"pod"`, ErrMalformed},
		"wrong field type":      {"", "Pod", `{"spec":{"containers":{}}}`, ErrMalformed},
		"empty image":           {"", "Pod", `{"spec":{"containers":[{"name":"c","image":""}]}}`, ErrMalformed},
		"too many images":       {"", "Pod", many, ErrMalformed},
		"unknown kind":          {"", "ConfigMap", `{}`, ErrUnknownKind},
		"kind in another group": {"evil.example", "Pod", pod, ErrUnknownKind},
	} {
		if _, err := Images(tc.group, tc.kind, []byte(tc.raw)); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
}

func TestDecode(t *testing.T) {
	for name, body := range map[string]string{
		"not JSON":   `{`,
		"no request": `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`,
		"no uid":     `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}}`,
		"v1beta1":    `{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x"}}`,
	} {
		if _, err := Decode([]byte(body)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	if r, err := Decode([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x"}}`)); err != nil || r.Request.UID != "x" {
		t.Errorf("a minimal review: %v %v", r, err)
	}
}

// FuzzAdmission feeds AdmissionReview bodies through decoding and image
// extraction: whatever it accepts has a request with a uid, and images that
// are non-empty, at most MaxImages, at JSON pointers into the object.
func FuzzAdmission(f *testing.F) {
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"operation":"CREATE","object":{"spec":{"containers":[{"name":"c","image":"r/c:v1"}]}}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"batch","version":"v1","kind":"CronJob"},"object":{"spec":{"jobTemplate":{"spec":{"template":{"spec":{"containers":[{"image":"x"}]}}}}}}}}`))
	f.Add([]byte(`{"request":{"uid":"u","kind":{"group":"apps","kind":"Deployment"},"object":null}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := Decode(body)
		if err != nil {
			return
		}
		if r.Request == nil || r.Request.UID == "" {
			t.Fatal("accepted a review without a request uid")
		}
		ims, err := Images(r.Request.Kind.Group, r.Request.Kind.Kind, r.Request.Object.Raw)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownKind) {
				t.Fatalf("an error of no known kind: %v", err)
			}
			return
		}
		if len(ims) == 0 || len(ims) > MaxImages {
			t.Fatalf("%d images accepted", len(ims))
		}
		for _, im := range ims {
			if im.Image == "" || !strings.HasPrefix(im.Path, "/spec/") || !strings.HasSuffix(im.Path, "/image") {
				t.Fatalf("accepted image %+v", im)
			}
		}
	})
}
