// Package auditlog owns attestd's tamper-evident audit log: a tessera
// (github.com/transparency-dev/tessera) transparency log in the tlog-tiles
// layout, whose checkpoints are signed with the log key in the
// signed-note format. Two backends:
//
//   - POSIX (one process; the default): the log is files in a directory of
//     the data dir, written atomically and synced before an append returns;
//   - MySQL/MariaDB (replicas): tessera's MySQL driver; every replica appends
//     to one log, sequenced under a row lock in one transaction.
//
// Append returns only when every entry is durably sequenced: stored with
// its index assigned and integrated into the tree. The checkpoint that
// covers it follows within the checkpoint interval. The log MUST NOT allow
// rewriting: it is only ever appended to, and nothing here deletes or
// replaces an entry.
//
// It knows nothing of events or services: entries are bytes.
package auditlog

import (
	"context"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"
	tmysql "github.com/transparency-dev/tessera/storage/mysql"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"
	"k8s.io/klog/v2"
)

// Errors.
var (
	// ErrNotFound means the checkpoint, tile or entry bundle asked for does
	// not exist (yet).
	ErrNotFound = errors.New("not in the log")
	// ErrInvalid means a request names something the log cannot have: a
	// size over the tree's, an index past it.
	ErrInvalid = errors.New("invalid log request")
	// ErrUnavailable means the log could not be appended to or read: its
	// storage failed, is slow, or the log is closed. Nothing asked for was
	// acknowledged.
	ErrUnavailable = errors.New("audit log unavailable")
)

// Options tune a log. Zero values take the defaults.
type Options struct {
	// Signer signs checkpoints; its name is the log's origin. Required.
	Signer note.Signer
	// CheckpointInterval is how often a checkpoint is published while the
	// log grows (default 1 s; the POSIX driver allows 100 ms, MySQL 1 s).
	CheckpointInterval time.Duration
	// BatchMaxSize and BatchMaxAge bound a sequencing batch: appends within
	// BatchMaxAge of each other share one (default 1024 entries, 1 ms).
	BatchMaxSize uint
	BatchMaxAge  time.Duration
}

func (o *Options) defaults() error {
	if o.Signer == nil {
		return errors.New("audit log: a checkpoint signer is required")
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = time.Second
	}
	if o.BatchMaxSize == 0 {
		o.BatchMaxSize = 1024
	}
	if o.BatchMaxAge <= 0 {
		o.BatchMaxAge = time.Millisecond
	}
	return nil
}

// Log is an open audit log.
type Log struct {
	add      tessera.AddFn
	reader   tessera.LogReader
	shutdown func(context.Context) error
	cancel   context.CancelFunc
	db       *sql.DB
	origin   string
	backend  string
}

// OpenPOSIX opens (creating it on first use) the log in dir.
func OpenPOSIX(ctx context.Context, dir string, o Options) (*Log, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit log dir: %w", err)
	}
	d, err := posix.New(ctx, posix.Config{Path: dir})
	if err != nil {
		return nil, fmt.Errorf("audit log %s: %w", dir, err)
	}
	return open(d, nil, "posix", o)
}

//go:embed mysql_schema.sql
var mysqlSchema string

// OpenMySQL opens the log in the MySQL or MariaDB database at rawURL
// (mysql://user:password@host:port/database), creating tessera's tables
// on first use. Every replica opening the same database appends to one log.
func OpenMySQL(ctx context.Context, rawURL string, o Options) (*Log, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	dsn, err := MySQLDSN(rawURL)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return nil, fmt.Errorf("audit log database: %w", err)
	}
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)
	db.SetConnMaxLifetime(5 * time.Minute)
	for _, stmt := range strings.Split(mysqlSchema, ";\n") {
		if strings.TrimSpace(stripComments(stmt)) == "" {
			continue
		}
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("audit log database: create tables: %w", err)
		}
	}
	d, err := tmysql.New(ctx, db)
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("audit log database: %w", err)
	}
	return open(d, db, "mysql", o)
}

func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "--") {
			b.WriteString(l)
		}
	}
	return b.String()
}

// MySQLDSN turns mysql://user:password@host:port/database?param=v into the
// driver's DSN. Only TCP is supported.
func MySQLDSN(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "mysql" || u.Host == "" || strings.Trim(u.Path, "/") == "" || strings.Contains(strings.Trim(u.Path, "/"), "/") {
		return "", fmt.Errorf("%w: log database url: want mysql://user:password@host:port/database", ErrInvalid)
	}
	c := mysql.NewConfig()
	c.Net, c.Addr, c.DBName = "tcp", u.Host, strings.Trim(u.Path, "/")
	if u.User != nil {
		c.User = u.User.Username()
		c.Passwd, _ = u.User.Password()
	}
	if !strings.Contains(u.Host, ":") {
		c.Addr += ":3306"
	}
	c.Params = map[string]string{}
	for k, vs := range u.Query() {
		c.Params[k] = vs[len(vs)-1]
	}
	return c.FormatDSN(), nil
}

func open(d tessera.Driver, db *sql.DB, backend string, o Options) (*Log, error) {
	// Background work (integration, checkpoints, garbage collection) runs
	// until Close, not until the caller's context ends.
	ctx, cancel := context.WithCancel(context.Background())
	opts := tessera.NewAppendOptions().
		WithCheckpointSigner(o.Signer).
		WithCheckpointInterval(o.CheckpointInterval).
		WithBatching(o.BatchMaxSize, o.BatchMaxAge).
		WithShutdownTimeout(10 * time.Second)
	a, shutdown, r, err := tessera.NewAppender(ctx, d, opts)
	if err != nil {
		cancel()
		if db != nil {
			_ = db.Close()
		}
		return nil, fmt.Errorf("audit log: %w", err)
	}
	return &Log{add: a.Add, reader: r, shutdown: shutdown, cancel: cancel, db: db, origin: o.Signer.Name(), backend: backend}, nil
}

// RouteLogs sends what tessera logs (through klog, process-wide) to l.
// klog's logger can be set only before anything logs: the first call
// wins, and later ones do nothing.
func RouteLogs(l *slog.Logger) { routeOnce.Do(func() { klog.SetSlogLogger(l) }) }

var routeOnce sync.Once

// Origin is the log's origin, the first line of its checkpoints.
func (l *Log) Origin() string { return l.origin }

// Backend names the storage: "posix" or "mysql".
func (l *Log) Backend() string { return l.backend }

// Append adds entries and returns their indices, in order, once every one
// of them is durably sequenced. Entries appended together share batches.
// An error wraps ErrUnavailable; entries of a failed call may still have
// been sequenced (the caller finds them by reading the log).
func (l *Log) Append(ctx context.Context, entries [][]byte) ([]uint64, error) {
	futures := make([]tessera.IndexFuture, len(entries))
	for i, e := range entries {
		futures[i] = l.add(ctx, tessera.NewEntry(e))
	}
	type result struct {
		idx []uint64
		err error
	}
	done := make(chan result, 1)
	go func() {
		out := make([]uint64, len(futures))
		for i, f := range futures {
			idx, err := f()
			if err != nil {
				done <- result{err: err}
				return
			}
			out[i] = idx.Index
		}
		done <- result{idx: out}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("%w: append: %w", ErrUnavailable, r.err)
		}
		return r.idx, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: append: %w", ErrUnavailable, ctx.Err())
	}
}

// Size is the number of entries integrated into the tree: the size the
// next checkpoint will have at least.
func (l *Log) Size(ctx context.Context) (uint64, error) {
	n, err := l.reader.IntegratedSize(ctx)
	if err != nil {
		return 0, fmt.Errorf("%w: size: %w", ErrUnavailable, err)
	}
	return n, nil
}

// Checkpoint returns the latest published checkpoint, a signed note.
func (l *Log) Checkpoint(ctx context.Context) ([]byte, error) {
	b, err := l.reader.ReadCheckpoint(ctx)
	return b, readErr("checkpoint", err)
}

// Tile returns the hash tile at level and index: full (p 0) or its first
// p hashes. A larger tile found in storage is cut to what was asked.
func (l *Log) Tile(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
	b, err := l.reader.ReadTile(ctx, level, index, p)
	if err != nil {
		return nil, readErr("tile", err)
	}
	want := layout.TileWidth * 32
	if p > 0 {
		want = int(p) * 32
	}
	switch {
	case len(b) < want:
		return nil, fmt.Errorf("%w: tile %d/%d has %d hashes", ErrNotFound, level, index, len(b)/32)
	case len(b) > want:
		b = b[:want]
	}
	return b, nil
}

// EntryBundle returns the entry bundle at index: full (p 0) or its first p
// entries. A larger bundle found in storage is cut to what was asked.
func (l *Log) EntryBundle(ctx context.Context, index uint64, p uint8) ([]byte, error) {
	b, err := l.reader.ReadEntryBundle(ctx, index, p)
	if err != nil {
		return nil, readErr("entry bundle", err)
	}
	want := layout.EntryBundleWidth
	if p > 0 {
		want = int(p)
	}
	// Each entry is a 2-byte big-endian length and its bytes.
	off, n := 0, 0
	for n < want && off+2 <= len(b) {
		off += 2 + (int(b[off])<<8 | int(b[off+1]))
		n++
	}
	if n < want || off > len(b) {
		return nil, fmt.Errorf("%w: entry bundle %d has %d entries", ErrNotFound, index, n)
	}
	return b[:off], nil
}

// Entries returns the entries [from, from+n) of a tree of size.
func (l *Log) Entries(ctx context.Context, from, n, size uint64) ([][]byte, error) {
	if from+n > size || from+n < from {
		return nil, fmt.Errorf("%w: entries [%d, %d) of a tree of %d", ErrInvalid, from, from+n, size)
	}
	var out [][]byte
	for ri := range layout.Range(from, n, size) {
		raw, err := l.EntryBundle(ctx, ri.Index, ri.Partial)
		if err != nil {
			return nil, err
		}
		var b api.EntryBundle
		if err := b.UnmarshalText(raw); err != nil {
			return nil, fmt.Errorf("%w: entry bundle %d: %w", ErrUnavailable, ri.Index, err)
		}
		if int(ri.First+ri.N) > len(b.Entries) {
			return nil, fmt.Errorf("%w: entry bundle %d has %d entries", ErrNotFound, ri.Index, len(b.Entries))
		}
		out = append(out, b.Entries[ri.First:ri.First+ri.N]...)
	}
	return out, nil
}

// InclusionProof returns the proof that the entry at index is in the tree
// of size, computed from the log's tiles with tessera's proof builder.
func (l *Log) InclusionProof(ctx context.Context, index, size uint64) ([][]byte, error) {
	if err := l.checkSize(ctx, size); err != nil {
		return nil, err
	}
	if index >= size {
		return nil, fmt.Errorf("%w: index %d is not below size %d", ErrInvalid, index, size)
	}
	pb, err := client.NewProofBuilder(ctx, size, l.reader.ReadTile)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	p, err := pb.InclusionProof(ctx, index)
	if err != nil {
		return nil, fmt.Errorf("%w: inclusion proof: %w", ErrUnavailable, err)
	}
	return p, nil
}

// ConsistencyProof returns the proof that the tree of size to extends the
// tree of size from.
func (l *Log) ConsistencyProof(ctx context.Context, from, to uint64) ([][]byte, error) {
	if err := l.checkSize(ctx, to); err != nil {
		return nil, err
	}
	if from == 0 || from > to {
		return nil, fmt.Errorf("%w: consistency from %d to %d: want 0 < from ≤ to", ErrInvalid, from, to)
	}
	pb, err := client.NewProofBuilder(ctx, to, l.reader.ReadTile)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	p, err := pb.ConsistencyProof(ctx, from, to)
	if err != nil {
		return nil, fmt.Errorf("%w: consistency proof: %w", ErrUnavailable, err)
	}
	return p, nil
}

func (l *Log) checkSize(ctx context.Context, size uint64) error {
	n, err := l.Size(ctx)
	if err != nil {
		return err
	}
	if size == 0 || size > n {
		return fmt.Errorf("%w: size %d: the log has %d entries", ErrInvalid, size, n)
	}
	return nil
}

// Close waits until a checkpoint covers everything this process appended
// (within the shutdown bound), then stops the log's background work.
func (l *Log) Close(ctx context.Context) error {
	err := l.shutdown(ctx)
	l.cancel()
	if l.db != nil {
		if cerr := l.db.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

func readErr(what string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("%w: %s: %w", ErrNotFound, what, err)
	}
	return fmt.Errorf("%w: read %s: %w", ErrUnavailable, what, err)
}
