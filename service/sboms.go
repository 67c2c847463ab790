package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	syftsbom "github.com/anchore/syft/syft/sbom"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/rivertype"
	"golang.org/x/sync/errgroup"

	"github.com/attestd/attestd/sbom"
	"github.com/attestd/attestd/storage/index"
	"github.com/attestd/attestd/storage/oci"
)

type sbomStore interface {
	PutSBOM(ctx context.Context, r index.SBOMRecord) error
	SBOM(ctx context.Context, digest, format, toolVersion string) (index.SBOMRecord, error)
}

type registryAccess interface {
	AccessFor(repo name.Repository) (oci.Access, error)
	Manifest(ctx context.Context, d name.Digest) ([]byte, error)
}

// SBOMLimits bound one cataloging job.
type SBOMLimits struct {
	// MaxBytes caps the image's compressed layers.
	MaxBytes int64
	// MaxLayers caps its layer count.
	MaxLayers int
	// Timeout caps one attempt.
	Timeout time.Duration
	// Workers caps how many jobs run at once in this process.
	Workers int
	// Poll is how often workers look for jobs nothing woke them for (jobs
	// this process inserts, and on PostgreSQL every insert, wake them at
	// once); default 1 s.
	Poll time.Duration
}

// SBOMArgs is the job of cataloging one pinned image.
type SBOMArgs struct {
	Image   string   `json:"image"`
	Formats []string `json:"formats"`
	Caller  string   `json:"caller"`
	// CallerID is the token id of the caller who asked, for the record.
	CallerID string `json:"caller_id,omitempty"`
}

// Kind names the job kind.
func (SBOMArgs) Kind() string { return "sbom" }

// InsertOpts makes identical pending or running jobs one job.
func (SBOMArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{MaxAttempts: 5, UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: []rivertype.JobState{
		rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRunning, rivertype.JobStateRetryable, rivertype.JobStateScheduled,
	}}}
}

// SBOMs generates SBOMs as jobs: syft catalogs the image straight from the
// registry by digest; each format is signed and stored as an attestation.
// Jobs live in the queue's database: they survive restarts, and a job whose
// worker died is retried.
type SBOMs struct {
	resolve resolver
	access  registryAccess
	atts    *Attestations
	store   sbomStore
	limits  SBOMLimits
	log     *slog.Logger
	client  JobClient
	workers bool
}

// JobClient is the part of a river client the SBOM service uses; it does
// not depend on the database driver behind it.
type JobClient interface {
	Insert(ctx context.Context, args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error)
	JobGet(ctx context.Context, id int64) (*rivertype.JobRow, error)
	JobUpdate(ctx context.Context, id int64, params *river.JobUpdateParams) (*rivertype.JobRow, error)
	Start(ctx context.Context) error
	StopAndCancel(ctx context.Context) error
}

// RiverClient returns a constructor of river clients on driver, for NewSBOMs.
func RiverClient[TTx any](driver riverdriver.Driver[TTx]) func(*river.Config) (JobClient, error) {
	return func(cfg *river.Config) (JobClient, error) { return river.NewClient(driver, cfg) }
}

// SBOMResult is one stored SBOM.
type SBOMResult struct {
	Format        string `json:"format"`
	PredicateType string `json:"predicate_type"`
	Digest        string `json:"digest"`
	ToolVersion   string `json:"tool_version"`
	Packages      int    `json:"packages"`
	Referrer      string `json:"referrer"`
	LegacyTag     string `json:"legacy_tag"`
}

// jobOutput is what a job records as it goes.
type jobOutput struct {
	Stage    string       `json:"stage"`
	Progress float64      `json:"progress"`
	Results  []SBOMResult `json:"results,omitempty"`
}

// JobsOption registers more workers, and periodic jobs, on the one river
// client (see Revalidator.Jobs).
type JobsOption func(w *river.Workers, cfg *river.Config)

// NewSBOMs returns the SBOM service over the queue driver. With workers
// true it also works jobs (serve, worker), those opts add included;
// otherwise it only enqueues.
func NewSBOMs(newClient func(*river.Config) (JobClient, error), r resolver, access registryAccess, atts *Attestations, store sbomStore, limits SBOMLimits, workers bool, log *slog.Logger, opts ...JobsOption) (*SBOMs, error) {
	s := &SBOMs{resolve: r, access: access, atts: atts, store: store, limits: limits, log: log, workers: workers}
	cfg := &river.Config{JobTimeout: limits.Timeout, RescueStuckJobsAfter: limits.Timeout + time.Minute, Logger: log}
	if workers {
		w := river.NewWorkers()
		river.AddWorker(w, &sbomWorker{s: s})
		cfg.Workers = w
		cfg.Queues = map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: max(1, limits.Workers)}}
		for _, o := range opts {
			o(w, cfg)
		}
		// A job inserted by this process wakes its producer at once
		// (river triggers the fetch on SQLite; PostgreSQL notifies every
		// replica and worker through LISTEN/NOTIFY); the poll is only the
		// fallback (retries coming due), slow enough that an idle server
		// does not spin on it.
		cfg.FetchPollInterval = time.Second
		if limits.Poll > 0 {
			cfg.FetchPollInterval = limits.Poll
		}
		cfg.FetchCooldown = 20 * time.Millisecond
	}
	c, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	s.client = c
	return s, nil
}

// Queue is the process's one river client, for other services' jobs.
func (s *SBOMs) Queue() JobClient { return s.client }

// Start starts working jobs; Stop cancels running work (it is retried later)
// and waits for the workers. Where this process works SBOM jobs, it also
// builds syft's license scanner in the background, so that the first job
// does not wait for it.
func (s *SBOMs) Start(ctx context.Context) error {
	if s.workers {
		go func() {
			if err := sbom.Warm(); err != nil {
				s.log.WarnContext(ctx, "syft's license scanner not built", "err", err.Error())
			}
		}()
	}
	return s.client.Start(ctx)
}

// Stop stops the workers; a job cut short is retried when workers run again.
func (s *SBOMs) Stop(ctx context.Context) error { return s.client.StopAndCancel(ctx) }

// SBOMRequest asks for SBOMs of an artifact.
type SBOMRequest struct {
	Subject SubjectRef
	Formats []string
}

// JobInfo is a job's state.
type JobInfo struct {
	ID       int64
	Kind     string
	State    string
	Attempt  int
	Stage    string
	Progress float64
	Errors   []string
	Results  []SBOMResult
	Image    string
}

// Request pins the subject and enqueues a cataloging job. If the same
// digest, formats and syft version were cataloged before, it returns that
// job, completed, without cataloging again.
func (s *SBOMs) Request(ctx context.Context, p Principal, req SBOMRequest) (JobInfo, error) {
	if err := Authorize(p, ActionSign); err != nil {
		return JobInfo{}, err
	}
	if len(req.Formats) == 0 {
		req.Formats = []string{sbom.SPDXJSON}
	}
	for _, f := range req.Formats {
		if _, err := sbom.PredicateType(f); err != nil {
			return JobInfo{}, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	slices.Sort(req.Formats)
	req.Formats = slices.Compact(req.Formats)
	subj, err := pin(ctx, s.resolve, req.Subject, writeScope(p, ActionSign, nil))
	if err != nil {
		return JobInfo{}, err
	}
	d := subj.Digest
	var cached []SBOMResult
	var jobID int64
	for _, f := range req.Formats {
		rec, err := s.store.SBOM(ctx, d.DigestStr(), f, sbom.Version)
		if errors.Is(err, index.ErrNotFound) {
			cached = nil
			break
		}
		if err != nil {
			return JobInfo{}, err
		}
		var r SBOMResult
		if err := json.Unmarshal([]byte(rec.Result), &r); err != nil {
			return JobInfo{}, err
		}
		cached, jobID = append(cached, r), rec.JobID
	}
	if len(cached) == len(req.Formats) {
		return JobInfo{ID: jobID, Kind: "sbom", State: string(rivertype.JobStateCompleted), Stage: "done (stored)", Progress: 1, Results: cached, Image: d.String()}, nil
	}
	res, err := s.client.Insert(ctx, SBOMArgs{Image: d.String(), Formats: req.Formats, Caller: p.Name, CallerID: p.TokenID}, nil)
	if err != nil {
		return JobInfo{}, fmt.Errorf("enqueue: %w", err)
	}
	return jobInfo(res.Job)
}

// Job returns the state of job id.
func (s *SBOMs) Job(ctx context.Context, p Principal, id int64) (JobInfo, error) {
	if err := Authorize(p, ActionVerify); err != nil {
		return JobInfo{}, err
	}
	j, err := s.client.JobGet(ctx, id)
	if errors.Is(err, river.ErrNotFound) {
		return JobInfo{}, fmt.Errorf("%w: no job %d", ErrNotFound, id)
	}
	if err != nil {
		return JobInfo{}, err
	}
	return jobInfo(j)
}

func jobInfo(j *rivertype.JobRow) (JobInfo, error) {
	info := JobInfo{ID: j.ID, Kind: j.Kind, State: string(j.State), Attempt: j.Attempt}
	var args SBOMArgs
	if json.Unmarshal(j.EncodedArgs, &args) == nil {
		info.Image = args.Image
	}
	for _, e := range j.Errors {
		info.Errors = append(info.Errors, e.Error)
	}
	var out jobOutput
	if o := j.Output(); len(o) > 0 && json.Unmarshal(o, &out) == nil {
		info.Stage, info.Progress, info.Results = out.Stage, out.Progress, out.Results
	}
	if j.State == rivertype.JobStateAvailable || j.State == rivertype.JobStateScheduled {
		info.Stage = "queued"
	}
	return info, nil
}

type sbomWorker struct {
	river.WorkerDefaults[SBOMArgs]
	s *SBOMs
}

func (w *sbomWorker) Timeout(*river.Job[SBOMArgs]) time.Duration { return w.s.limits.Timeout }

func (w *sbomWorker) Work(ctx context.Context, job *river.Job[SBOMArgs]) error {
	return w.s.work(ctx, job)
}

// errLimit marks a job that can never succeed: it is failed, not retried.
func errLimit(format string, a ...any) error {
	return river.JobCancel(fmt.Errorf("limit: "+format, a...))
}

func (s *SBOMs) progress(ctx context.Context, job *river.Job[SBOMArgs], stage string, p float64) {
	if _, err := s.client.JobUpdate(ctx, job.ID, &river.JobUpdateParams{Output: jobOutput{Stage: stage, Progress: p}}); err != nil {
		s.log.WarnContext(ctx, "job progress not recorded", "job", job.ID, "err", err.Error())
	}
}

func (s *SBOMs) work(ctx context.Context, job *river.Job[SBOMArgs]) error {
	d, err := name.NewDigest(job.Args.Image)
	if err != nil {
		return river.JobCancel(fmt.Errorf("job image %q: %w", job.Args.Image, err))
	}
	s.progress(ctx, job, "checking limits", 0.05)
	raw, err := s.access.Manifest(ctx, d)
	if err != nil {
		return fmt.Errorf("read manifest: %w", err)
	}
	m, err := v1.ParseManifest(bytesReader(raw))
	if err != nil {
		return river.JobCancel(fmt.Errorf("manifest: %w", err))
	}
	var total int64
	for _, l := range m.Layers {
		total += l.Size
	}
	if total > s.limits.MaxBytes {
		return errLimit("the image's layers are %d bytes, more than %d", total, s.limits.MaxBytes)
	}
	if len(m.Layers) > s.limits.MaxLayers {
		return errLimit("%d layers, more than %d", len(m.Layers), s.limits.MaxLayers)
	}
	acc, err := s.access.AccessFor(d.Context())
	if err != nil {
		return river.JobCancel(err)
	}
	s.progress(ctx, job, "cataloging", 0.2)
	doc, err := sbom.Catalog(ctx, d.String(), sbom.Registry{Host: acc.Host, Insecure: acc.Insecure, Username: acc.Username, Password: acc.Password, Token: acc.Token})
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return errLimit("cataloging took longer than %s", s.limits.Timeout)
		}
		return err
	}
	// The formats are encoded and signed concurrently (their registry
	// writes take turns on the subject's lock); each is recorded as it is
	// stored, so a retry after a partial failure finds the stored ones. One
	// format failing does not cut the other short.
	s.progress(ctx, job, "signing", 0.7)
	results := make([]SBOMResult, len(job.Args.Formats))
	var g errgroup.Group
	for i, f := range job.Args.Formats {
		g.Go(func() error {
			r, err := s.sign(ctx, job, d, doc, f)
			results[i] = r
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	s.log.InfoContext(ctx, "sbom done", "job", job.ID, "digest", d.DigestStr(), "formats", job.Args.Formats, "caller", job.Args.Caller)
	return river.RecordOutput(ctx, jobOutput{Stage: "done", Progress: 1, Results: results})
}

// sign encodes doc in format f, signs and stores it as an attestation
// about d, and records it.
func (s *SBOMs) sign(ctx context.Context, job *river.Job[SBOMArgs], d name.Digest, doc *syftsbom.SBOM, f string) (SBOMResult, error) {
	b, err := sbom.Encode(doc, f)
	if err != nil {
		return SBOMResult{}, river.JobCancel(err)
	}
	pt, _ := sbom.PredicateType(f)
	res, err := s.atts.attestGenerated(ctx, Principal{TokenID: job.Args.CallerID, Name: job.Args.Caller}, EventSBOMCreated, d, pt, b)
	if err != nil {
		return SBOMResult{}, fmt.Errorf("attest %s: %w", f, err)
	}
	r := SBOMResult{Format: f, PredicateType: pt, Digest: d.DigestStr(), ToolVersion: sbom.Version, Packages: doc.Artifacts.Packages.PackageCount()}
	for _, l := range res.Locations {
		if l.Kind == "referrer" {
			r.Referrer = l.Ref
		} else {
			r.LegacyTag = l.Tag
		}
	}
	rb, _ := json.Marshal(r)
	if err := s.store.PutSBOM(ctx, index.SBOMRecord{Digest: d.DigestStr(), Format: f, ToolVersion: sbom.Version, JobID: job.ID, Result: string(rb)}); err != nil {
		return SBOMResult{}, err
	}
	return r, nil
}
