package service

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/attestd/attestd/storage/index"
)

type revalidationStore interface {
	AdmittedSince(ctx context.Context, since time.Time, limit int) ([]index.Admitted, error)
	PutRevalidations(ctx context.Context, rs []index.Revalidation, start time.Time) error
	Revalidations(ctx context.Context, f index.RevalidationFilter) ([]index.Revalidation, error)
}

// maxRevalidated caps the admissions one run judges again.
const maxRevalidated = 5000

// Revalidator judges again, periodically, what was admitted lately: each
// repository, digest and namespace admitted in the window, against today's
// policies, key states and quarantines, as the gate would (its requirement
// checks, without its verdict cache and without recording a decision).
// Each run replaces the stored results; GET /v1/deployments?compliant=false
// lists what would now be denied, with the reason.
type Revalidator struct {
	gate    *Gate
	store   revalidationStore
	window  time.Duration
	timeout time.Duration
	notify  func(ctx context.Context, rs []index.Revalidation)
	refresh func(ctx context.Context) error
	log     *slog.Logger
	now     func() time.Time
	max     int

	mu sync.Mutex
}

// RevalidatorOption configures a Revalidator.
type RevalidatorOption func(*Revalidator)

// WithNonCompliantNotify calls notify after each run with the results that
// turned non-compliant in it (compliant, or not judged, in the previous
// run). The run waits for it: it MUST be bounded.
func WithNonCompliantNotify(notify func(ctx context.Context, rs []index.Revalidation)) RevalidatorOption {
	return func(r *Revalidator) { r.notify = notify }
}

// WithRefresh calls refresh before each run (Sync.Check): a run judges
// with the policies, key states and quarantines any replica left, not
// only those this one has polled. A failed refresh fails the run.
func WithRefresh(refresh func(ctx context.Context) error) RevalidatorOption {
	return func(r *Revalidator) { r.refresh = refresh }
}

// NewRevalidator returns the re-validation service: window is how far back
// admissions are judged again; timeout bounds the judging of one image.
func NewRevalidator(gate *Gate, store revalidationStore, window, timeout time.Duration, log *slog.Logger, opts ...RevalidatorOption) *Revalidator {
	r := &Revalidator{gate: gate, store: store, window: window, timeout: timeout, log: log, now: time.Now, max: maxRevalidated}
	for _, o := range opts {
		o(r)
	}
	return r
}

// RevalidationSummary is what one run found.
type RevalidationSummary struct {
	Started, Finished time.Time
	// Checked counts the admissions judged; NonCompliant those that would
	// now be denied.
	Checked, NonCompliant int
	// Truncated is true when the window held more admissions than one run
	// judges (the rest are not judged this run).
	Truncated bool
}

// RunNow runs one re-validation at once (role admin), for incident
// response: after a revocation or a quarantine, rather than at the next
// period.
func (r *Revalidator) RunNow(ctx context.Context, p Principal) (RevalidationSummary, error) {
	if err := Authorize(p, ActionQuarantine); err != nil {
		return RevalidationSummary{}, err
	}
	return r.Run(ctx)
}

// Run judges again every admission in the window and stores the results.
// A failure to read the admissions or store the results is an error; an
// image whose evidence cannot be read is non-compliant, with the reason.
func (r *Revalidator) Run(ctx context.Context) (RevalidationSummary, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	// The index keeps microseconds: a result stored a little after start
	// must not read as older than it (results older than start are pruned).
	start := r.now().UTC().Truncate(time.Microsecond)
	sum := RevalidationSummary{Started: start}
	if r.refresh != nil {
		if err := r.refresh(ctx); err != nil {
			return sum, fmt.Errorf("%w: read the shared state: %w", ErrUnavailable, err)
		}
	}
	admitted, err := r.store.AdmittedSince(ctx, start.Add(-r.window), r.max+1)
	if err != nil {
		return sum, fmt.Errorf("%w: read admissions: %w", ErrUnavailable, err)
	}
	if len(admitted) > r.max {
		admitted, sum.Truncated = admitted[:r.max], true
		r.log.WarnContext(ctx, "re-validation: more admissions in the window than one run judges", "judged", r.max, "window", r.window.String())
	}
	no := false
	before, err := r.store.Revalidations(ctx, index.RevalidationFilter{Compliant: &no, Limit: r.max + 1})
	if err != nil {
		return sum, fmt.Errorf("%w: read re-validation: %w", ErrUnavailable, err)
	}
	wasBad := map[[3]string]bool{}
	for _, b := range before {
		wasBad[[3]string{b.Repository, b.Digest, b.Namespace}] = true
	}
	results := make([]index.Revalidation, 0, len(admitted))
	var bad []index.Revalidation
	for _, a := range admitted {
		if err := ctx.Err(); err != nil {
			return sum, fmt.Errorf("%w: re-validation: %w", ErrUnavailable, err)
		}
		res := index.Revalidation{Repository: a.Repository, Digest: a.Digest, Namespace: a.Namespace}
		d, ok := r.subject(a)
		if !ok {
			res.Reason = "deny: the admitted image " + a.Image + " does not name a configured registry now"
		} else {
			cctx, cancel := context.WithTimeout(ctx, r.timeout)
			res.Compliant, res.Reason = r.gate.rejudge(cctx, a.Namespace, d)
			cancel()
			res.Repository = d.Context().Name()
		}
		res.CheckedAt = r.now().UTC().Truncate(time.Microsecond)
		if res.CheckedAt.Before(start) {
			res.CheckedAt = start
		}
		if !res.Compliant {
			bad = append(bad, res)
		}
		results = append(results, res)
	}
	if err := r.store.PutRevalidations(ctx, results, start); err != nil {
		return sum, fmt.Errorf("%w: store re-validation: %w", ErrUnavailable, err)
	}
	sum.Checked, sum.NonCompliant, sum.Finished = len(results), len(bad), r.now().UTC()
	level := slog.LevelInfo
	if len(bad) > 0 {
		level = slog.LevelWarn
	}
	r.log.Log(ctx, level, "re-validation done", "checked", sum.Checked, "non_compliant", sum.NonCompliant, "truncated", sum.Truncated)
	var turned []index.Revalidation
	for _, b := range bad {
		if !wasBad[[3]string{b.Repository, b.Digest, b.Namespace}] {
			turned = append(turned, b)
		}
	}
	if r.notify != nil && len(turned) > 0 {
		r.notify(ctx, turned)
	}
	return sum, nil
}

// subject is the repository and digest an admission named.
func (r *Revalidator) subject(a index.Admitted) (name.Digest, bool) {
	repo := a.Repository
	if repo == "" {
		repo, _, _ = strings.Cut(a.Image, "@")
	}
	ref, err := r.gate.resolve.Parse(repo + "@" + a.Digest)
	if err != nil {
		return name.Digest{}, false
	}
	d, ok := ref.(name.Digest)
	return d, ok
}

// RevalidateArgs is the periodic re-validation job.
type RevalidateArgs struct{}

// Kind names the job kind.
func (RevalidateArgs) Kind() string { return "revalidate" }

// revalidateQueue is the queue re-validation runs on, apart from SBOM jobs.
const revalidateQueue = "revalidate"

// InsertOpts keeps one run pending or running at a time, on its own queue.
func (RevalidateArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: revalidateQueue, MaxAttempts: 3, UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: []rivertype.JobState{
		rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRunning, rivertype.JobStateRetryable, rivertype.JobStateScheduled,
	}}}
}

type revalidateWorker struct {
	river.WorkerDefaults[RevalidateArgs]
	r       *Revalidator
	timeout time.Duration
}

func (w *revalidateWorker) Timeout(*river.Job[RevalidateArgs]) time.Duration { return w.timeout }

func (w *revalidateWorker) Work(ctx context.Context, _ *river.Job[RevalidateArgs]) error {
	_, err := w.r.Run(ctx)
	return err
}

// Jobs registers the re-validation worker and its period (every interval,
// and once at start) on the river client that works jobs. Periodic jobs
// are enqueued by the queue's leader only, so every process that works
// jobs registers it: whichever leads, runs it.
func (r *Revalidator) Jobs(interval time.Duration) JobsOption {
	return func(w *river.Workers, cfg *river.Config) {
		river.AddWorker(w, &revalidateWorker{r: r, timeout: interval})
		cfg.Queues[revalidateQueue] = river.QueueConfig{MaxWorkers: 1}
		cfg.PeriodicJobs = append(cfg.PeriodicJobs, river.NewPeriodicJob(river.PeriodicInterval(interval),
			func() (river.JobArgs, *river.InsertOpts) { return RevalidateArgs{}, nil }, &river.PeriodicJobOpts{RunOnStart: true}))
	}
}
