package service_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/attestd/attestd/service"
	"github.com/attestd/attestd/storage/index"
)

// The package index benchmark: ATTESTD_BENCH_SBOMS synthetic SBOMs (the
// README reports 100,000) are indexed through the recorder, as attestd
// records them, into SQLite and into PostgreSQL; then package-range
// queries (GET /v1/packages' service call) run against each. It prints the
// ingest rate, the index size per SBOM and the query p50 and p99; it
// asserts none of them.
//
// The SBOMs have a realistic shape: 200 to 2,000 packages each
// (log-uniform), an OS base (deb, rpm or apk) and one to three language
// ecosystems (npm, pypi, maven, golang, cargo, gem, nuget), packages drawn
// from each ecosystem by a Zipf law, so that popular packages are shared
// across most images and rare ones by few, and versions skewed to recent.

type ecosystem struct {
	typ, ns  string
	names    int
	versions func(r *mrand.Rand, major, minor, patch int) string
	qual     string
}

var ecosystems = []ecosystem{
	{"deb", "debian", 4000, func(r *mrand.Rand, a, b, c int) string {
		return fmt.Sprintf("%d.%d.%d-%d+deb12u%d", a, b, c, r.IntN(5)+1, r.IntN(3))
	}, "?arch=amd64&distro=debian-12"},
	{"rpm", "redhat", 4000, func(r *mrand.Rand, a, b, c int) string { return fmt.Sprintf("%d.%d.%d-%d.el9", a, b, c, r.IntN(30)+1) }, "?arch=x86_64"},
	{"apk", "alpine", 3000, func(r *mrand.Rand, a, b, c int) string { return fmt.Sprintf("%d.%d.%d-r%d", a, b, c, r.IntN(10)) }, "?arch=x86_64"},
	{"npm", "", 30000, func(_ *mrand.Rand, a, b, c int) string { return fmt.Sprintf("%d.%d.%d", a, b, c) }, ""},
	{"pypi", "", 10000, func(_ *mrand.Rand, a, b, c int) string { return fmt.Sprintf("%d.%d.%d", a, b, c) }, ""},
	{"maven", "org.example", 10000, func(_ *mrand.Rand, a, b, c int) string { return fmt.Sprintf("%d.%d.%d", a, b, c) }, ""},
	{"golang", "github.com/example", 8000, func(_ *mrand.Rand, a, b, c int) string { return fmt.Sprintf("v%d.%d.%d", a, b, c) }, ""},
	{"cargo", "", 4000, func(_ *mrand.Rand, a, b, c int) string { return fmt.Sprintf("%d.%d.%d", a, b, c) }, ""},
	{"gem", "", 4000, func(_ *mrand.Rand, a, b, c int) string { return fmt.Sprintf("%d.%d.%d", a, b, c) }, ""},
	{"nuget", "", 4000, func(_ *mrand.Rand, a, b, c int) string { return fmt.Sprintf("%d.%d.%d", a, b, c) }, ""},
}

var licenses = []string{"MIT", "Apache-2.0", "BSD-3-Clause", "GPL-2.0-only", "GPL-3.0-or-later", "LGPL-2.1-or-later", "ISC", "MPL-2.0", "BSD-2-Clause", "Zlib", "Unlicense", "EPL-2.0"}

// versionOf is the version string of a package's k-th version (k = 0 is
// the oldest): deterministic per package, so that SBOMs share versions.
func versionOf(e ecosystem, name, k int) string {
	r := mrand.New(mrand.NewPCG(uint64(name), uint64(k)))
	return e.versions(r, 1+k/6, k%6, r.IntN(20))
}

const versionsPerPackage = 8

// benchWriters record SBOMs at once: the recorder commits what they wait
// for together (group commit), as it does for concurrent SBOM jobs.
var benchWriters = envInt("ATTESTD_BENCH_WRITERS", 16)

func envInt(k string, d int) int {
	if n, err := strconv.Atoi(os.Getenv(k)); err == nil && n > 0 {
		return n
	}
	return d
}

func pkgOf(e ecosystem, name, k int) index.Package {
	n := fmt.Sprintf("%s-pkg-%d", e.typ, name)
	ns := e.ns
	if e.typ == "maven" || e.typ == "golang" {
		ns = fmt.Sprintf("%s%d", e.ns, name%50)
	}
	v := versionOf(e, name, k)
	purl := "pkg:" + e.typ + "/"
	if ns != "" {
		purl += ns + "/"
	}
	purl += n + "@" + url.PathEscape(v) + e.qual
	return index.Package{PURL: purl, Type: e.typ, Namespace: ns, Name: n, Version: v, Licenses: []string{licenses[name%len(licenses)]}}
}

// synthetic makes SBOM i: deterministic in i.
func synthetic(i int) []index.Package {
	r := mrand.New(mrand.NewPCG(uint64(i), 42))
	total := int(math.Round(200 * math.Pow(10, r.Float64()))) // 200 to 2,000, log-uniform
	base := ecosystems[[]int{0, 0, 1, 2}[r.IntN(4)]]
	langs := []ecosystem{ecosystems[3+r.IntN(7)]}
	for range r.IntN(3) {
		langs = append(langs, ecosystems[3+r.IntN(7)])
	}
	out := make([]index.Package, 0, total)
	seen := map[string]bool{}
	add := func(e ecosystem, z *mrand.Zipf) {
		name := int(z.Uint64())
		k := versionsPerPackage - 1 - int(math.Min(float64(versionsPerPackage-1), r.ExpFloat64()*1.5)) // recent versions are likelier
		p := pkgOf(e, name, k)
		if !seen[p.Name] {
			seen[p.Name] = true
			out = append(out, p)
		}
	}
	osN := total * (20 + r.IntN(20)) / 100
	zb := mrand.NewZipf(r, 1.07, 8, uint64(base.names-1))
	for tries := 0; len(out) < osN && tries < 4*total; tries++ {
		add(base, zb)
	}
	for tries := 0; len(out) < total && tries < 8*total; tries++ {
		e := langs[r.IntN(len(langs))]
		add(e, mrand.NewZipf(r, 1.07, 8, uint64(e.names-1)))
	}
	return out
}

// Resources the benchmarks fill once and share across their runs, removed
// when the test binary ends.
var cleanups []func()

func TestMain(m *testing.M) {
	code := m.Run()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	os.Exit(code)
}

func TestSyntheticSBOMShape(t *testing.T) {
	total, minN, maxN := 0, 1<<30, 0
	for i := range 300 {
		ps := synthetic(i)
		total += len(ps)
		minN, maxN = min(minN, len(ps)), max(maxN, len(ps))
	}
	if minN < 180 || maxN > 2000 || total/300 < 500 {
		t.Errorf("synthetic SBOMs hold %d to %d packages, %d on average; want 200 to 2,000", minN, maxN, total/300)
	}
	if a, b := synthetic(5), synthetic(5); len(a) != len(b) || a[0].PURL != b[0].PURL || a[len(a)-1].PURL != b[len(b)-1].PURL {
		t.Error("synthetic SBOMs are not deterministic")
	}
}

func benchSBOMs(b *testing.B) int {
	n := 100_000
	if v := os.Getenv("ATTESTD_BENCH_SBOMS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 100 {
			b.Fatalf("ATTESTD_BENCH_SBOMS=%q: want a number of at least 100", v)
		}
	}
	return n
}

// ingested is an index filled once per engine for the whole run (a
// benchmark function runs more than once).
type ingested struct {
	db              *index.DB
	sboms, packages int
	took            time.Duration
	bytesPerSBOM    float64
}

var (
	ingestMu  sync.Mutex
	ingestFor = map[string]*ingested{}
)

func fill(b *testing.B, engine string, open func() (*index.DB, func() int64)) *ingested {
	ingestMu.Lock()
	defer ingestMu.Unlock()
	if in, ok := ingestFor[engine]; ok {
		return in
	}
	in := &ingested{}
	ingestFor[engine] = in
	db, size := open()
	in.db = db
	n := benchSBOMs(b)
	rec := service.NewRecorder(db, slog.New(slog.DiscardHandler))
	before := size()
	start := time.Now()
	var next, pkgs atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, benchWriters)
	for range benchWriters { // concurrent writers share transactions, as requests do
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				ps := synthetic(i)
				pkgs.Add(int64(len(ps)))
				repo, dg := fmt.Sprintf("registry.example/team%d/app%d", i%40, i), fmt.Sprintf("sha256:%064x", i+1)
				_, err := rec.Record(context.Background(), service.Event{Kind: service.EventSBOMCreated, Actor: service.Principal{TokenID: "t", Name: "ci"}, Repository: repo, Digest: dg,
					PredicateType: "https://spdx.dev/Document",
					Evidence: []index.Evidence{{Repository: repo, Digest: dg, Format: "referrer", Content: "sha256:r" + strconv.Itoa(i), Kind: "attestation", Ref: repo + "@sha256:r", PredicateType: "https://spdx.dev/Document"},
						{Repository: repo, Digest: dg, Format: "legacy-tag", Content: "sha256:l" + strconv.Itoa(i), Kind: "attestation", Ref: repo + ":sha256-x.att", PredicateType: "https://spdx.dev/Document"}},
					SBOMs: []index.SBOMDoc{{Repository: repo, Digest: dg, DocDigest: fmt.Sprintf("sha256:%064x", i), Format: "spdx", PredicateType: "https://spdx.dev/Document", Packages: ps}}})
				if err != nil {
					errs <- err
					return
				}
				if i%10_000 == 9_999 {
					b.Logf("%s: %d SBOMs indexed in %s", engine, i+1, time.Since(start).Round(time.Second))
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatalf("%s: ingest: %v", engine, err)
	}
	_ = rec.Close(context.Background())
	in.took, in.sboms, in.packages = time.Since(start), n, int(pkgs.Load())
	in.bytesPerSBOM = float64(size()-before) / float64(n)
	return in
}

// query is one package-range query of the mix: a popular package (the
// head of the Zipf law) or any, below its middle version or within a span.
func query(r *mrand.Rand) service.PackageQuery {
	e := ecosystems[r.IntN(len(ecosystems))]
	name := r.IntN(e.names)
	if r.IntN(2) == 0 {
		name = r.IntN(50) // a popular one
	}
	p := pkgOf(e, name, 0)
	base := "pkg:" + e.typ + "/"
	if p.Namespace != "" {
		base += p.Namespace + "/"
	}
	base += p.Name
	mid := versionOf(e, name, versionsPerPackage/2)
	rng := "vers:" + e.typ + "/<" + url.PathEscape(mid)
	if r.IntN(3) == 0 {
		rng = "vers:" + e.typ + "/>=" + url.PathEscape(versionOf(e, name, 2)) + "|<" + url.PathEscape(versionOf(e, name, 6))
	}
	return service.PackageQuery{PURL: base, Range: rng, Limit: 100}
}

func benchQueries(b *testing.B, engine string, in *ingested) {
	svc := service.NewPackages(in.db, in.db, in.db)
	auditor := service.Principal{Name: "auditor", Roles: []string{service.RoleAuditor}}
	r := mrand.New(mrand.NewPCG(7, 7))
	var lat []time.Duration
	matched := 0
	b.ResetTimer()
	for range b.N {
		for range 50 {
			q := query(r)
			t0 := time.Now()
			page, err := svc.Find(context.Background(), auditor, q)
			lat = append(lat, time.Since(t0))
			if err != nil {
				b.Fatalf("%s: %+v: %v", engine, q, err)
			}
			matched += len(page.Matches)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.50), "query-p50-ms")
	b.ReportMetric(pct(0.99), "query-p99-ms")
	b.ReportMetric(float64(matched)/float64(len(lat)), "artifacts/query")
	b.ReportMetric(float64(in.sboms)/in.took.Seconds(), "ingest-sboms/s")
	b.ReportMetric(float64(in.packages)/in.took.Seconds(), "ingest-pkgs/s")
	b.ReportMetric(in.bytesPerSBOM, "index-bytes/sbom")
	b.ReportMetric(float64(in.sboms), "sboms")
	b.ReportMetric(float64(in.packages)/float64(in.sboms), "pkgs/sbom")
}

// BenchmarkPackageIndexSQLite indexes the synthetic SBOMs into SQLite and
// queries them by package range.
func BenchmarkPackageIndexSQLite(b *testing.B) {
	in := fill(b, "sqlite", func() (*index.DB, func() int64) {
		dir, err := os.MkdirTemp("", "attestd-bench-")
		if err != nil {
			b.Fatal(err)
		}
		path := filepath.Join(dir, "index.db")
		db, err := index.OpenSQLite(context.Background(), path)
		if err != nil {
			b.Fatal(err)
		}
		cleanups = append(cleanups, func() { _ = db.Close(); _ = os.RemoveAll(dir) })
		return db, func() int64 {
			var total int64
			for _, f := range []string{path, path + "-wal"} {
				if fi, err := os.Stat(f); err == nil {
					total += fi.Size()
				}
			}
			return total
		}
	})
	benchQueries(b, "sqlite", in)
}

// BenchmarkPackageIndexPostgres does the same on PostgreSQL (scripts/with-services).
func BenchmarkPackageIndexPostgres(b *testing.B) {
	base := os.Getenv("ATTESTD_TEST_POSTGRES_URL")
	if base == "" {
		b.Skip("ATTESTD_TEST_POSTGRES_URL is not set (make bench sets it)")
	}
	in := fill(b, "postgres", func() (*index.DB, func() int64) {
		u := freshPostgres(b, base)
		db, err := index.OpenPostgres(context.Background(), u)
		if err != nil {
			b.Fatal(err)
		}
		raw, err := sql.Open("pgx", u)
		if err != nil {
			b.Fatal(err)
		}
		cleanups = append(cleanups, func() { _ = db.Close(); _ = raw.Close() })
		return db, func() int64 {
			_, _ = raw.Exec("CHECKPOINT")
			var n int64
			if err := raw.QueryRow(`SELECT pg_database_size(current_database())`).Scan(&n); err != nil {
				b.Fatal(err)
			}
			return n
		}
	})
	benchQueries(b, "postgres", in)
}

func freshPostgres(b *testing.B, base string) string {
	ctx := context.Background()
	admin, err := sql.Open("pgx", base)
	if err != nil {
		b.Fatal(err)
	}
	defer admin.Close()
	rb := make([]byte, 6)
	_, _ = rand.Read(rb)
	name := "bench_" + hex.EncodeToString(rb)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		b.Fatal(err)
	}
	u, _ := url.Parse(base)
	u.Path = "/" + name
	cleanups = append(cleanups, func() {
		if a, err := sql.Open("pgx", base); err == nil {
			_, _ = a.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			_ = a.Close()
		}
	})
	return u.String()
}
