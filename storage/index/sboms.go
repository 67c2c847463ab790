package index

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// SBOMRecord says where the SBOM of a digest, in a format, made by a tool
// version, is stored (Result, JSON), and which job made it.
type SBOMRecord struct {
	Digest, Format, ToolVersion string
	JobID                       int64
	Result                      string
}

// PutSBOM records an SBOM.
func (d *DB) PutSBOM(ctx context.Context, r SBOMRecord) error {
	_, err := d.db.ExecContext(ctx, d.q(`INSERT INTO sboms (digest, format, tool_version, job_id, result, created_at) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT(digest, format, tool_version) DO UPDATE SET job_id=excluded.job_id, result=excluded.result`),
		r.Digest, r.Format, r.ToolVersion, r.JobID, r.Result, time.Now().UTC())
	if err != nil {
		return fmt.Errorf("record sbom: %w", err)
	}
	return nil
}

// SBOM returns the recorded SBOM, or ErrNotFound.
func (d *DB) SBOM(ctx context.Context, digest, format, toolVersion string) (SBOMRecord, error) {
	r := SBOMRecord{Digest: digest, Format: format, ToolVersion: toolVersion}
	err := d.db.QueryRowContext(ctx, d.q(`SELECT job_id, result FROM sboms WHERE digest = ? AND format = ? AND tool_version = ?`), digest, format, toolVersion).Scan(&r.JobID, &r.Result)
	if errors.Is(err, sql.ErrNoRows) {
		return SBOMRecord{}, ErrNotFound
	}
	return r, err
}
