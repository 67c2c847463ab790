package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
	tclient "github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"

	"github.com/attestd/attestd/api/client"
	"github.com/attestd/attestd/api/wire"
	"github.com/attestd/attestd/tlog"
)

// logKeyCmd prints the audit log's verifier key, to pin.
func logKeyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "log-key",
		Short: "Print the audit log's verifier key (pin it: attestctl audit log-key > log.pub)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			k, err := cl.LogKey(c.Context())
			if err != nil {
				return err
			}
			if _, err := tlog.NewVerifier(k); err != nil {
				return fmt.Errorf("the server's log key: %w", err)
			}
			_, err = fmt.Fprintln(c.OutOrStdout(), k)
			return err
		},
	}
}

// verifyLogResult is what verify-log proved, for -o json.
type verifyLogResult struct {
	Origin     string            `json:"origin"`
	Size       uint64            `json:"size"`
	Root       []byte            `json:"root"`
	Consistent *uint64           `json:"consistent_with_size,omitempty"`
	Saved      string            `json:"saved,omitempty"`
	Included   []verifiedLogItem `json:"included"`
}

type verifiedLogItem struct {
	Index uint64 `json:"log_index"`
	Event string `json:"event,omitempty"`
	Kind  string `json:"kind"`
}

type verifyLogOptions struct {
	keyFile, since, digest, span string
	wait                         time.Duration
}

func verifyLogCmd(g *globals) *cobra.Command {
	var o verifyLogOptions
	c := &cobra.Command{
		Use:   "verify-log",
		Short: "Verify the audit log: a signed checkpoint, consistency with the last one seen, inclusion of events",
		Long: "Fetch the audit log's latest checkpoint and verify its signature against the pinned key\n" +
			"(--log-key, saved from `attestctl audit log-key`). With --since FILE, prove that it extends the\n" +
			"checkpoint saved in FILE by an earlier run, then save it there. With --digest, prove that every\n" +
			"event about the digest (from GET /v1/events) is in the log under the checkpoint, rebuilding each\n" +
			"entry from the event and re-hashing the entry downloaded; with --range A:B, the entries A..B-1.\n" +
			"Everything is computed here from the log's tiles; nothing the server says about proofs is trusted.\n" +
			"Any failure exits non-zero and says what was inconsistent.",
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			res, err := verifyLog(c.Context(), cl, o, c.ErrOrStderr())
			if err != nil {
				return fmt.Errorf("verify-log: %w", err)
			}
			return g.print(c.OutOrStdout(), res, func(w io.Writer) {
				fmt.Fprintf(w, "checkpoint: %s, size %d, root %x (signature verified with the pinned key)\n", res.Origin, res.Size, res.Root)
				if res.Consistent != nil {
					fmt.Fprintf(w, "consistent with the checkpoint of size %d saved earlier\n", *res.Consistent)
				}
				for _, it := range res.Included {
					fmt.Fprintf(w, "included: %d %s %s\n", it.Index, it.Kind, it.Event)
				}
				if res.Saved != "" {
					fmt.Fprintf(w, "saved the checkpoint to %s\n", res.Saved)
				}
			})
		},
	}
	f := c.Flags()
	f.StringVar(&o.keyFile, "log-key", "", "the pinned verifier key of the log (from attestctl audit log-key); required")
	f.StringVar(&o.since, "since", "", "a checkpoint saved by an earlier run: prove consistency with it, then save the new one there")
	f.StringVar(&o.digest, "digest", "", "prove the inclusion of every event about this digest (sha256:…)")
	f.StringVar(&o.span, "range", "", "prove the inclusion of log entries A:B (A included, B not)")
	f.DurationVar(&o.wait, "wait", 10*time.Second, "how long to wait for a checkpoint that covers the events")
	_ = c.MarkFlagRequired("log-key")
	return c
}

func verifyLog(ctx context.Context, cl *client.Client, o verifyLogOptions, stderr io.Writer) (verifyLogResult, error) {
	kb, err := os.ReadFile(filepath.Clean(o.keyFile))
	if err != nil {
		return verifyLogResult{}, fmt.Errorf("--log-key: %w", err)
	}
	v, err := tlog.NewVerifier(string(kb))
	if err != nil {
		return verifyLogResult{}, fmt.Errorf("--log-key %s: %w", o.keyFile, err)
	}
	f, err := cl.LogFetcher()
	if err != nil {
		return verifyLogResult{}, err
	}
	latest, err := fetchCheckpoint(ctx, f, v)
	if err != nil {
		return verifyLogResult{}, err
	}
	res := verifyLogResult{Origin: latest.Origin}

	// Consistency with what was seen before.
	var saved *tlog.Checkpoint
	if o.since != "" {
		raw, err := os.ReadFile(filepath.Clean(o.since))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			fmt.Fprintf(stderr, "no checkpoint saved in %s yet: this one is trusted from now on\n", o.since)
		case err != nil:
			return res, fmt.Errorf("--since: %w", err)
		default:
			cp, err := tlog.OpenCheckpoint(raw, v)
			if err != nil {
				return res, fmt.Errorf("the checkpoint saved in %s: %w", o.since, err)
			}
			if err := consistent(ctx, f, cp, latest); err != nil {
				return res, fmt.Errorf("the log's checkpoint against the one saved in %s: %w", o.since, err)
			}
			saved = &cp
		}
	}

	// Which entries to prove, and what each must be.
	type want struct {
		index uint64
		entry []byte // nil: any entry (a range)
		event wire.Event
	}
	var wants []want
	if o.digest != "" {
		evs, err := allEvents(ctx, cl, o.digest)
		if err != nil {
			return res, err
		}
		if len(evs) == 0 {
			return res, fmt.Errorf("no events about %s", o.digest)
		}
		for _, e := range evs {
			if e.LogIndex == nil {
				return res, fmt.Errorf("event %s (%s) is not in the audit log: the index names no log index for it (attestd appends it once the log answers)", e.ID, e.Kind)
			}
			b, err := entryOf(e)
			if err != nil {
				return res, fmt.Errorf("event %s (%s): %w", e.ID, e.Kind, err)
			}
			wants = append(wants, want{index: *e.LogIndex, entry: b, event: e})
		}
	}
	if o.span != "" {
		a, b, err := parseSpan(o.span)
		if err != nil {
			return res, err
		}
		for i := a; i < b; i++ {
			wants = append(wants, want{index: i})
		}
	}

	// A checkpoint that covers them: the log publishes one within its
	// checkpoint interval. Each newer one must extend the one before.
	need := uint64(0)
	for _, w := range wants {
		need = max(need, w.index+1)
	}
	deadline := time.Now().Add(o.wait)
	for latest.Size < need {
		if time.Now().After(deadline) {
			return res, fmt.Errorf("no checkpoint covers log index %d within %s: the latest has size %d", need-1, o.wait, latest.Size)
		}
		time.Sleep(200 * time.Millisecond)
		next, err := fetchCheckpoint(ctx, f, v)
		if err != nil {
			return res, err
		}
		if err := consistent(ctx, f, latest, next); err != nil {
			return res, fmt.Errorf("a newer checkpoint against the one fetched before: %w", err)
		}
		latest = next
	}
	res.Size, res.Root = latest.Size, latest.Root
	if saved != nil {
		res.Consistent = &saved.Size
	}

	// Inclusion: the entry downloaded must hash to a leaf the checkpoint
	// commits to, and be the event the index reports.
	pb, err := tclient.NewProofBuilder(ctx, latest.Size, f.ReadTile)
	if err != nil {
		return res, err
	}
	bundles := map[uint64]api.EntryBundle{}
	for _, w := range wants {
		bi := w.index / layout.EntryBundleWidth
		b, ok := bundles[bi]
		if !ok {
			if b, err = tclient.GetEntryBundle(ctx, f.ReadEntryBundle, bi, latest.Size); err != nil {
				return res, fmt.Errorf("entry %d: the log does not serve it (deleted?): %w", w.index, err)
			}
			bundles[bi] = b
		}
		off := w.index % layout.EntryBundleWidth
		if off >= uint64(len(b.Entries)) {
			return res, fmt.Errorf("entry %d: its bundle holds only %d entries (truncated?)", w.index, len(b.Entries))
		}
		entry := b.Entries[off]
		p, err := pb.InclusionProof(ctx, w.index)
		if err != nil {
			return res, fmt.Errorf("entry %d: no inclusion proof from the log's tiles (deleted or truncated?): %w", w.index, err)
		}
		what := fmt.Sprintf("entry %d", w.index)
		if w.event.ID != "" {
			what = fmt.Sprintf("entry %d (event %s, %s)", w.index, w.event.ID, w.event.Kind)
		}
		if err := tlog.CheckInclusion(latest, w.index, entry, p); err != nil {
			return res, fmt.Errorf("%s: the entry or the tiles were changed: %w", what, err)
		}
		if w.entry != nil && !bytes.Equal(entry, w.entry) {
			return res, fmt.Errorf("%s: the log holds other bytes than the event the index reports (one of them was changed)\n  log:   %s\n  event: %s", what, entry, w.entry)
		}
		it := verifiedLogItem{Index: w.index, Event: w.event.ID, Kind: w.event.Kind}
		if w.entry == nil {
			it.Kind = entryKind(entry)
			it.Event, _ = tlog.EntryID(entry)
		}
		res.Included = append(res.Included, it)
	}
	if res.Included == nil {
		res.Included = []verifiedLogItem{}
	}
	if o.since != "" {
		if err := os.WriteFile(filepath.Clean(o.since), latest.Raw, 0o644); err != nil { //nolint:gosec // a checkpoint is public
			return res, fmt.Errorf("save the checkpoint: %w", err)
		}
		res.Saved = o.since
	}
	return res, nil
}

func fetchCheckpoint(ctx context.Context, f *tclient.HTTPFetcher, v note.Verifier) (tlog.Checkpoint, error) {
	raw, err := f.ReadCheckpoint(ctx)
	if err != nil {
		return tlog.Checkpoint{}, fmt.Errorf("fetch the checkpoint: %w", err)
	}
	cp, err := tlog.OpenCheckpoint(raw, v)
	if err != nil {
		return tlog.Checkpoint{}, fmt.Errorf("the log's latest checkpoint: %w", err)
	}
	return cp, nil
}

// consistent proves that later extends earlier, from the log's tiles.
func consistent(ctx context.Context, f *tclient.HTTPFetcher, earlier, later tlog.Checkpoint) error {
	var p [][]byte
	if earlier.Size > 0 && later.Size > earlier.Size {
		pb, err := tclient.NewProofBuilder(ctx, later.Size, f.ReadTile)
		if err != nil {
			return err
		}
		if p, err = pb.ConsistencyProof(ctx, earlier.Size, later.Size); err != nil {
			return fmt.Errorf("%w: no consistency proof from size %d to %d from the log's tiles: %w", tlog.ErrInconsistent, earlier.Size, later.Size, err)
		}
	}
	return tlog.CheckConsistency(earlier, later, p)
}

// allEvents lists every event about digest.
func allEvents(ctx context.Context, cl *client.Client, digest string) ([]wire.Event, error) {
	var out []wire.Event
	q := client.EventQuery{Digest: digest, Limit: 1000}
	for {
		page, err := cl.Events(ctx, q)
		if err != nil {
			return nil, err
		}
		out = append(out, page.Events...)
		if page.NextCursor == "" {
			return out, nil
		}
		q.Cursor = page.NextCursor
	}
}

// entryOf rebuilds an event's log entry from what GET /v1/events reports.
func entryOf(e wire.Event) ([]byte, error) {
	en := tlog.Entry{ID: e.ID, Kind: e.Kind, At: e.At, Repository: e.Repository, Digest: e.Digest, Tags: e.Tags,
		Actor:         tlog.Actor{Kind: e.Actor.Kind, ID: e.Actor.ID, Name: e.Actor.Name},
		PredicateType: e.PredicateType, RequestID: e.RequestID, Locations: e.Locations, Detail: e.Detail}
	if e.Key != nil {
		en.Key = &tlog.Key{ID: e.Key.ID, Name: e.Key.Name, Version: e.Key.Version}
	}
	return en.Canonical()
}

func entryKind(entry []byte) string {
	var e tlog.Entry
	if err := json.Unmarshal(entry, &e); err != nil || e.Kind == "" {
		return "?"
	}
	return e.Kind
}

func parseSpan(s string) (uint64, uint64, error) {
	as, bs, ok := strings.Cut(s, ":")
	a, err1 := strconv.ParseUint(as, 10, 64)
	b, err2 := strconv.ParseUint(bs, 10, 64)
	if !ok || err1 != nil || err2 != nil || a >= b || b-a > 1<<20 {
		return 0, 0, fmt.Errorf("--range %q: want A:B with A < B (at most 1048576 entries)", s)
	}
	return a, b, nil
}
