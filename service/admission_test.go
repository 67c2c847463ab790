package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/attestd/attestd/keys"
	"github.com/attestd/attestd/service/policy"
	"github.com/attestd/attestd/storage/index"
	"github.com/attestd/attestd/storage/oci"
)

// slowRegistry answers every resolve after delay, with an error.
type slowRegistry struct{ delay time.Duration }

func (slowRegistry) Parse(s string) (name.Reference, error) { return name.ParseReference(s) }
func (r slowRegistry) Resolve(ctx context.Context, _ name.Reference) (oci.Resolved, error) {
	select {
	case <-time.After(r.delay):
		return oci.Resolved{}, errors.New("registry says no")
	case <-ctx.Done():
		return oci.Resolved{}, ctx.Err()
	}
}

// TestAdmissionDecidesImagesConcurrently: the images of one review are
// decided at once, within the one deadline: 8 images that each take 300 ms
// are all decided (and denied with the registry's reason) well within a
// deadline of 1.5 s that deciding them one after another would overrun.
func TestAdmissionDecidesImagesConcurrently(t *testing.T) {
	ctx := context.Background()
	db, err := index.OpenSQLite(ctx, filepath.Join(t.TempDir(), "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p, err := policy.Parse([]byte("name: p\nmatch: {images: [\"registry.example/**\"], namespaces: [prod]}\nsignatures: {keys: [default]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	ps, _ := policy.NewSet(p)
	log := slog.New(slog.DiscardHandler)
	rec := NewRecorder(db, log)
	defer rec.Close(ctx)
	const delay = 300 * time.Millisecond
	sv, _, err := signature.NewDefaultECDSASignerVerifier()
	if err != nil {
		t.Fatal(err)
	}
	k, _ := keys.New("default", sv)
	set, err := keys.NewSet("default", k)
	if err != nil {
		t.Fatal(err)
	}
	g := NewGate(slowRegistry{delay}, nil, set, ps, rec, 5*time.Second, time.Minute, log)
	a := NewAdmission(g, 1500*time.Millisecond, false)

	var cs []string
	for i := range 8 {
		cs = append(cs, fmt.Sprintf(`{"name":"c%d","image":"registry.example/app%d@sha256:%s"}`, i, i, strings.Repeat("a", 64)))
	}
	body := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","kind":{"group":"","version":"v1","kind":"Pod"},` +
		`"namespace":"prod","operation":"CREATE","object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web"},"spec":{"containers":[` +
		strings.Join(cs, ",") + `]}}}}`
	start := time.Now()
	out, err := a.Review(ctx, Principal{Name: "t", Roles: []string{RoleVerifier}}, []byte(body), false)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Response struct {
			Allowed bool `json:"allowed"`
			Status  struct {
				Message string `json:"message"`
			} `json:"status"`
		} `json:"response"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatal(err)
	}
	if r.Response.Allowed || strings.Count(r.Response.Status.Message, "registry says no") != 8 {
		t.Errorf("want 8 denies with the registry's reason, got allowed=%v: %s", r.Response.Allowed, r.Response.Status.Message)
	}
	if took > 4*delay {
		t.Errorf("8 images of %s each took %s: not decided concurrently", delay, took)
	}
}
