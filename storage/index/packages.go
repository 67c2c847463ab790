package index

import (
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Package is one package an SBOM lists, as the index keeps it: one row per
// purl (or name and version where there is no purl) and licenses, shared
// by every artifact that holds it.
type Package struct {
	ID int64
	// PURL is canonical, with its qualifiers; "" where the SBOM gave none.
	PURL string
	// Type is the purl type (the ecosystem); "" without a purl.
	Type, Namespace, Name, Version string
	Licenses                       []string
}

// SBOMDoc is one SBOM attestation's packages, indexed against its subject.
type SBOMDoc struct {
	Repository, Digest string
	// DocDigest identifies the document: a digest of its canonical
	// predicate. A document is indexed once per artifact.
	DocDigest     string
	Format        string
	PredicateType string
	Packages      []Package
}

// SBOMInfo is an indexed SBOM document, without its packages.
type SBOMInfo struct {
	DocDigest, Format, PredicateType string
	Packages                         int
	EventID                          string
	RecordedAt                       time.Time
}

// Bounds of one package query.
const (
	// MaxPackageRows caps the package rows (versions and license
	// variants) one query may select before it looks for artifacts.
	MaxPackageRows = 10_000
	chunk          = 400
)

// ErrTooBroad means a package query selects more than MaxPackageRows
// package rows: it must be narrowed.
var ErrTooBroad = errors.New("the query selects too many packages")

// indexSBOM indexes s's packages against its artifact unless that document
// is indexed already; it reports whether it indexed it now.
func (d *DB) indexSBOM(ctx context.Context, tx *sql.Tx, e Event, s SBOMDoc) (bool, error) {
	aid, err := d.artifactID(ctx, tx, s.Repository, s.Digest, e.At)
	if err != nil {
		return false, err
	}
	res, err := tx.ExecContext(ctx, d.q(`INSERT INTO sbom_docs (artifact_id, doc_digest, format, predicate_type, packages, event_id, recorded_at)
		VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`), aid, s.DocDigest, s.Format, s.PredicateType, len(s.Packages), e.ID, e.At.UTC())
	if err != nil {
		return false, fmt.Errorf("index SBOM: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return false, nil // indexed already
	}
	ids, err := d.packageIDs(ctx, tx, s.Packages)
	if err != nil {
		return false, err
	}
	if err := d.linkPackages(ctx, tx, aid, ids); err != nil {
		return false, err
	}
	if err := d.linkLicenses(ctx, tx, aid, s.Packages, ids); err != nil {
		return false, err
	}
	return true, nil
}

func licenseKey(ls []string) string {
	if len(ls) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(ls)
	return string(b)
}

type pkgKey struct{ purl, name, version, licenses string }

func keyOf(p Package) pkgKey {
	if p.PURL != "" {
		return pkgKey{purl: p.PURL, name: p.Name, version: p.Version, licenses: licenseKey(p.Licenses)}
	}
	return pkgKey{name: p.Name, version: p.Version, licenses: licenseKey(p.Licenses)}
}

// idCache holds package ids by identity. Package rows are never changed
// or deleted, so an id stays right once its row is committed; only such
// ids enter the cache (AppendEvents puts them after its commit).
type idCache struct {
	mu sync.Mutex
	m  map[pkgKey]int64
}

// maxCachedIDs bounds the cache (about 100 bytes an entry); past it, it
// starts over.
const maxCachedIDs = 200_000

func (c *idCache) get(k pkgKey) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[k]
}

func (c *idCache) put(m map[pkgKey]int64) {
	if len(m) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m)+len(m) > maxCachedIDs {
		c.m = make(map[pkgKey]int64, len(m))
	}
	for k, v := range m {
		c.m[k] = v
	}
}

// idCollector gathers the package ids a transaction reads or writes, to
// cache once it commits.
type idCollector struct{ m map[pkgKey]int64 }

type idCollectorKey struct{}

func withIDCollector(ctx context.Context) (context.Context, *idCollector) {
	c := &idCollector{m: map[pkgKey]int64{}}
	return context.WithValue(ctx, idCollectorKey{}, c), c
}

// packageIDs returns the id of each package, recording those not known.
func (d *DB) packageIDs(ctx context.Context, tx *sql.Tx, ps []Package) ([]int64, error) {
	ids := make(map[pkgKey]int64, len(ps))
	if c, ok := ctx.Value(idCollectorKey{}).(*idCollector); ok {
		defer func() {
			for k, v := range ids {
				c.m[k] = v
			}
		}()
	}
	// Known ones: cached, or by purl (and by name for those without one).
	var purls, names []any
	seenP, seenN := map[string]bool{}, map[string]bool{}
	for _, p := range ps {
		k := keyOf(p)
		if id := d.ids.get(k); id != 0 {
			ids[k] = id
			continue
		}
		if p.PURL != "" && !seenP[p.PURL] {
			seenP[p.PURL] = true
			purls = append(purls, p.PURL)
		} else if p.PURL == "" && !seenN[p.Name] {
			seenN[p.Name] = true
			names = append(names, p.Name)
		}
	}
	lookup := func(query string, vals []any) error {
		for len(vals) > 0 {
			n := min(len(vals), chunk)
			rows, err := tx.QueryContext(ctx, d.q(query+placeholders(n)+`)`), vals[:n]...)
			if err != nil {
				return fmt.Errorf("index packages: %w", err)
			}
			for rows.Next() {
				var id int64
				var k pkgKey
				if err := rows.Scan(&id, &k.purl, &k.name, &k.version, &k.licenses); err != nil {
					_ = rows.Close()
					return err
				}
				ids[k] = id
			}
			if err := rows.Close(); err != nil {
				return err
			}
			vals = vals[n:]
		}
		return nil
	}
	if err := lookup(`SELECT id, purl, name, version, licenses FROM packages WHERE purl IN (`, purls); err != nil {
		return nil, err
	}
	if err := lookup(`SELECT id, purl, name, version, licenses FROM packages WHERE purl = '' AND name IN (`, names); err != nil {
		return nil, err
	}
	// New ones, many to a statement.
	var fresh []Package
	seen := map[pkgKey]bool{}
	for _, p := range ps {
		if k := keyOf(p); ids[k] == 0 && !seen[k] {
			seen[k] = true
			fresh = append(fresh, p)
		}
	}
	for len(fresh) > 0 {
		n := min(len(fresh), chunk/4)
		var args []any
		var rowsSQL []string
		for _, p := range fresh[:n] {
			rowsSQL = append(rowsSQL, "(?, ?, ?, ?, ?, ?)")
			args = append(args, p.PURL, p.Type, p.Namespace, p.Name, p.Version, licenseKey(p.Licenses))
		}
		rows, err := tx.QueryContext(ctx, d.q(`INSERT INTO packages (purl, type, namespace, name, version, licenses) VALUES `+strings.Join(rowsSQL, ", ")+`
			ON CONFLICT DO NOTHING RETURNING id, purl, name, version, licenses`), args...)
		if err != nil {
			return nil, fmt.Errorf("index packages: %w", err)
		}
		for rows.Next() {
			var id int64
			var k pkgKey
			if err := rows.Scan(&id, &k.purl, &k.name, &k.version, &k.licenses); err != nil {
				_ = rows.Close()
				return nil, err
			}
			ids[k] = id
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
		// A row another transaction wrote meanwhile is not returned: read it.
		for _, p := range fresh[:n] {
			k := keyOf(p)
			if ids[k] != 0 {
				continue
			}
			var id int64
			if err := tx.QueryRowContext(ctx, d.q(`SELECT id FROM packages WHERE purl = ? AND name = ? AND version = ? AND licenses = ?`),
				k.purl, k.name, k.version, k.licenses).Scan(&id); err != nil {
				return nil, fmt.Errorf("index packages: %w", err)
			}
			ids[k] = id
		}
		fresh = fresh[n:]
	}
	out := make([]int64, len(ps))
	for i, p := range ps {
		out[i] = ids[keyOf(p)]
	}
	return out, nil
}

func (d *DB) linkPackages(ctx context.Context, tx *sql.Tx, artifact int64, ids []int64) error {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if d.engine == Postgres { // one statement, the ids as an array
		if _, err := tx.ExecContext(ctx, `INSERT INTO artifact_packages (package_id, artifact_id) SELECT unnest($1::integer[]), $2 ON CONFLICT DO NOTHING`, ids, artifact); err != nil {
			return fmt.Errorf("index packages: %w", err)
		}
		return nil
	}
	for len(ids) > 0 {
		n := min(len(ids), chunk)
		args := make([]any, 0, 2*n)
		for _, id := range ids[:n] {
			args = append(args, id, artifact)
		}
		if _, err := tx.ExecContext(ctx, d.q(`INSERT INTO artifact_packages (package_id, artifact_id) VALUES `+
			strings.TrimSuffix(strings.Repeat("(?, ?), ", n), ", ")+` ON CONFLICT DO NOTHING`), args...); err != nil {
			return fmt.Errorf("index packages: %w", err)
		}
		ids = ids[n:]
	}
	return nil
}

// linkLicenses records, for each license (lower case) of ps, that the
// artifact holds those packages under it.
func (d *DB) linkLicenses(ctx context.Context, tx *sql.Tx, artifact int64, ps []Package, ids []int64) error {
	by := map[string][]int64{}
	for i, p := range ps {
		for _, l := range p.Licenses {
			l = strings.ToLower(l)
			by[l] = append(by[l], ids[i])
		}
	}
	if len(by) == 0 {
		return nil
	}
	lics := make([]string, 0, len(by))
	for l := range by {
		lics = append(lics, l)
	}
	slices.Sort(lics)
	// Another SBOM of the artifact may have linked some already: merge.
	for start := 0; start < len(lics); start += chunk {
		part := lics[start:min(len(lics), start+chunk)]
		args := []any{artifact}
		for _, l := range part {
			args = append(args, l)
		}
		rows, err := tx.QueryContext(ctx, d.q(`SELECT license, package_ids FROM artifact_licenses WHERE artifact_id = ? AND license IN (`+placeholders(len(part))+`)`), args...)
		if err != nil {
			return fmt.Errorf("index licenses: %w", err)
		}
		for rows.Next() {
			var l string
			var blob []byte
			if err := rows.Scan(&l, &blob); err != nil {
				_ = rows.Close()
				return err
			}
			old, err := decodeIDs(blob)
			if err != nil {
				_ = rows.Close()
				return err
			}
			by[l] = append(by[l], old...)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		var vals []string
		args = args[:0]
		for _, l := range part {
			vals = append(vals, "(?, ?, ?)")
			args = append(args, l, artifact, encodeIDs(by[l]))
		}
		if _, err := tx.ExecContext(ctx, d.q(`INSERT INTO artifact_licenses (license, artifact_id, package_ids) VALUES `+strings.Join(vals, ", ")+`
			ON CONFLICT (license, artifact_id) DO UPDATE SET package_ids = excluded.package_ids`), args...); err != nil {
			return fmt.Errorf("index licenses: %w", err)
		}
	}
	return nil
}

// encodeIDs writes ids, sorted and unique, as delta uvarints.
func encodeIDs(ids []int64) []byte {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	out := make([]byte, 0, 3*len(ids))
	prev := int64(0)
	for _, id := range ids {
		out = binary.AppendUvarint(out, uint64(id-prev)) //nolint:gosec // sorted ids: the difference is not negative
		prev = id
	}
	return out
}

func decodeIDs(b []byte) ([]int64, error) {
	var out []int64
	prev := int64(0)
	for len(b) > 0 {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return nil, errors.New("corrupt package id list")
		}
		prev += int64(v) //nolint:gosec // ids fit an int64: they were written from one
		out = append(out, prev)
		b = b[n:]
	}
	return out, nil
}

// PackageQuery selects package rows by identity: Name always; Type and
// Namespace when HasType and HasNamespace say so (a purl gives both).
type PackageQuery struct {
	Type, Namespace, Name string
	HasType, HasNamespace bool
}

// Packages returns the package rows q selects (every version and license
// variant), or ErrTooBroad past MaxPackageRows.
func (d *DB) Packages(ctx context.Context, q PackageQuery) ([]Package, error) {
	where, args := []string{"name = ?"}, []any{q.Name}
	if q.HasType {
		where, args = append(where, "type = ?"), append(args, q.Type)
	}
	if q.HasNamespace {
		where, args = append(where, "namespace = ?"), append(args, q.Namespace)
	}
	args = append(args, MaxPackageRows+1)
	rows, err := d.db.QueryContext(ctx, d.q(`SELECT id, purl, type, namespace, name, version, licenses FROM packages WHERE `+strings.Join(where, " AND ")+` ORDER BY id LIMIT ?`), args...)
	if err != nil {
		return nil, fmt.Errorf("list packages: %w", err)
	}
	out, err := scanPackages(rows)
	if err != nil {
		return nil, err
	}
	if len(out) > MaxPackageRows {
		return nil, fmt.Errorf("%w: more than %d versions and licenses of %s", ErrTooBroad, MaxPackageRows, q.Name)
	}
	return out, nil
}

func scanPackages(rows *sql.Rows) ([]Package, error) {
	defer rows.Close()
	var out []Package
	for rows.Next() {
		var p Package
		var lic string
		if err := rows.Scan(&p.ID, &p.PURL, &p.Type, &p.Namespace, &p.Name, &p.Version, &lic); err != nil {
			return nil, fmt.Errorf("read package: %w", err)
		}
		if err := json.Unmarshal([]byte(lic), &p.Licenses); err != nil {
			return nil, fmt.Errorf("read package %d: %w", p.ID, err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// PackagesByID returns the package rows with the given ids, in id order.
func (d *DB) PackagesByID(ctx context.Context, ids []int64) ([]Package, error) {
	var out []Package
	for len(ids) > 0 {
		n := min(len(ids), chunk)
		args := make([]any, n)
		for i, id := range ids[:n] {
			args[i] = id
		}
		rows, err := d.db.QueryContext(ctx, d.q(`SELECT id, purl, type, namespace, name, version, licenses FROM packages WHERE id IN (`+placeholders(n)+`) ORDER BY id`), args...)
		if err != nil {
			return nil, fmt.Errorf("list packages: %w", err)
		}
		ps, err := scanPackages(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, ps...)
		ids = ids[n:]
	}
	slices.SortFunc(out, func(a, b Package) int { return int(a.ID - b.ID) })
	return out, nil
}

// Holding is an artifact and the packages it holds that a query selected.
type Holding struct {
	ArtifactID int64
	PackageIDs []int64
}

// ArtifactsHolding returns, in artifact order after the cursor after, at
// most limit artifacts holding any of the packages, each with those it
// holds. Each package's artifacts are read in order from the index, at
// most limit of them, and merged: the work is bounded by the packages
// asked for, not by how many artifacts hold them.
func (d *DB) ArtifactsHolding(ctx context.Context, packageIDs []int64, after int64, limit int) ([]Holding, error) {
	if limit <= 0 {
		limit = 100
	}
	by := map[int64][]int64{}
	for start := 0; start < len(packageIDs); start += 50 {
		part := packageIDs[start:min(len(packageIDs), start+50)]
		var sel []string
		var args []any
		for i, id := range part {
			sel = append(sel, `SELECT package_id, artifact_id FROM (SELECT package_id, artifact_id FROM artifact_packages
				WHERE package_id = ? AND artifact_id > ? ORDER BY artifact_id LIMIT ?) AS p`+strconv.Itoa(i))
			args = append(args, id, after, limit)
		}
		rows, err := d.db.QueryContext(ctx, d.q(strings.Join(sel, " UNION ALL ")), args...)
		if err != nil {
			return nil, fmt.Errorf("list artifacts holding packages: %w", err)
		}
		for rows.Next() {
			var pid, aid int64
			if err := rows.Scan(&pid, &aid); err != nil {
				_ = rows.Close()
				return nil, err
			}
			by[aid] = append(by[aid], pid)
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
	}
	return holdings(by, limit), nil
}

func holdings(by map[int64][]int64, limit int) []Holding {
	out := make([]Holding, 0, len(by))
	for aid, pids := range by {
		slices.Sort(pids)
		out = append(out, Holding{ArtifactID: aid, PackageIDs: slices.Compact(pids)})
	}
	slices.SortFunc(out, func(a, b Holding) int { return int(a.ArtifactID - b.ArtifactID) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

// ArtifactsLicensed returns, in artifact order after the cursor after, at
// most limit artifacts holding a package under license (an SPDX id, in
// any case), each with those packages.
func (d *DB) ArtifactsLicensed(ctx context.Context, license string, after int64, limit int) ([]Holding, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := d.db.QueryContext(ctx, d.q(`SELECT artifact_id, package_ids FROM artifact_licenses WHERE license = ? AND artifact_id > ? ORDER BY artifact_id LIMIT ?`),
		strings.ToLower(license), after, limit)
	if err != nil {
		return nil, fmt.Errorf("list artifacts by license: %w", err)
	}
	defer rows.Close()
	var out []Holding
	for rows.Next() {
		var h Holding
		var blob []byte
		if err := rows.Scan(&h.ArtifactID, &blob); err != nil {
			return nil, err
		}
		if h.PackageIDs, err = decodeIDs(blob); err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

// SBOMsOf returns the SBOM documents indexed for an artifact.
func (d *DB) SBOMsOf(ctx context.Context, repository, digest string) ([]SBOMInfo, error) {
	rows, err := d.db.QueryContext(ctx, d.q(`SELECT s.doc_digest, s.format, s.predicate_type, s.packages, s.event_id, s.recorded_at
		FROM sbom_docs s JOIN artifacts a ON a.id = s.artifact_id WHERE a.repository = ? AND a.digest = ? ORDER BY s.recorded_at, s.doc_digest`), repository, digest)
	if err != nil {
		return nil, fmt.Errorf("list SBOMs: %w", err)
	}
	defer rows.Close()
	var out []SBOMInfo
	for rows.Next() {
		var s SBOMInfo
		var at dbTime
		if err := rows.Scan(&s.DocDigest, &s.Format, &s.PredicateType, &s.Packages, &s.EventID, &at); err != nil {
			return nil, err
		}
		s.RecordedAt = at.t
		out = append(out, s)
	}
	return out, rows.Err()
}
