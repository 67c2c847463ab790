package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/jackc/pgx/v5"

	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/internal/app"
	"github.com/attestd/attestd/internal/testenv"
)

// freshDatabase creates a database for one test on the test PostgreSQL.
func freshDatabase(t *testing.T) string {
	t.Helper()
	base := need(t, "ATTESTD_TEST_POSTGRES_URL", "a PostgreSQL URL, started by scripts/with-services")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	db := "t_" + hex.EncodeToString(b)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+db); err != nil {
		t.Fatal(err)
	}
	return strings.Replace(base, "/postgres?", "/"+db+"?", 1)
}

// TestSBOMJobsOnPostgres runs two attestd replicas on one PostgreSQL job
// queue: a job one of them takes in is seen, and worked, by the queue they share.
func TestSBOMJobsOnPostgres(t *testing.T) {
	ctx := context.Background()
	url := freshDatabase(t)
	reg := httptest.NewServer(registry.New(registry.WithReferrersSupport(true)))
	t.Cleanup(reg.Close)
	host := strings.TrimPrefix(reg.URL, "http://")
	kms := testenv.StartLocalKMS(t)
	key := kms.CreateKey(t, "sbom-jobs")
	log := sharedLog(t)
	cfg := func(c *app.Config) {
		log(c)
		c.DatabaseURL, c.EmbeddedRegistry.Enabled = url, false
		c.Registries = []app.Registry{{Host: host}}
		c.Keys = []app.KeyConfig{{Name: "release", URI: key}}
	}
	a := testenv.Start(t, cfg)
	b := testenv.StartReplica(t, a, cfg)
	_, d, _ := testenv.PushRandom(t, host, "pg/app", authn.Anonymous)

	j, err := a.Client(t, a.Token(t, "signer")).SBOM(ctx, wire.SBOMRequest{Subject: wire.Subject{Image: d.String()}})
	if err != nil {
		t.Fatal(err)
	}
	done := waitJob(t, b.Client(t, b.Token(t, "verifier")), j.ID, 2*time.Minute)
	if done.State != "completed" || len(done.Results) != 1 {
		t.Errorf("job seen from the other replica: %+v", done)
	}
}
