package service

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/attestd/attestd/storage/index"
)

type eventReader interface {
	Events(ctx context.Context, f index.EventFilter) ([]index.Event, error)
}

// Audit answers auditors from the record: the events of every state
// change, filtered and paged.
type Audit struct {
	events eventReader
}

// NewAudit returns the audit service.
func NewAudit(events eventReader) *Audit { return &Audit{events: events} }

// EventQuery selects events. Cursor continues a listing from where its
// previous page ended.
type EventQuery struct {
	Digest, Kind, Actor string
	Since, Until        time.Time
	Cursor              string
	Limit               int
}

// EventPage is one page of events, oldest first; Next is the cursor of the
// next page, "" at the end.
type EventPage struct {
	Events []index.Event
	Next   string
}

// Page sizes.
const (
	defaultEventPage = 100
	maxEventPage     = 1000
)

// Events lists events (roles auditor, admin).
func (a *Audit) Events(ctx context.Context, p Principal, q EventQuery) (EventPage, error) {
	if err := Authorize(p, ActionAudit); err != nil {
		return EventPage{}, err
	}
	f := index.EventFilter{Digest: q.Digest, Kind: q.Kind, Actor: q.Actor, Since: q.Since, Until: q.Until, Limit: q.Limit}
	if f.Limit == 0 {
		f.Limit = defaultEventPage
	}
	if f.Limit < 0 || f.Limit > maxEventPage {
		return EventPage{}, fmt.Errorf("%w: limit must be 1 to %d", ErrInvalid, maxEventPage)
	}
	if q.Kind != "" {
		base := q.Kind
		if len(base) > 2 && base[len(base)-2:] == ".*" {
			base = base[:len(base)-2]
			ok := false
			for _, k := range EventKinds {
				ok = ok || len(k) > len(base) && k[:len(base)+1] == base+"."
			}
			if !ok {
				return EventPage{}, fmt.Errorf("%w: no event kind starts with %q", ErrInvalid, base)
			}
		} else if !slices.Contains(EventKinds, q.Kind) {
			return EventPage{}, fmt.Errorf("%w: unknown event kind %q (kinds: %v)", ErrInvalid, q.Kind, EventKinds)
		}
	}
	if q.Cursor != "" {
		n, err := strconv.ParseInt(q.Cursor, 10, 64)
		if err != nil || n < 0 {
			return EventPage{}, fmt.Errorf("%w: bad cursor", ErrInvalid)
		}
		f.After = n
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Until.After(q.Since) {
		return EventPage{}, fmt.Errorf("%w: until must be after since", ErrInvalid)
	}
	evs, err := a.events.Events(ctx, f)
	if err != nil {
		return EventPage{}, fmt.Errorf("%w: read events: %w", ErrUnavailable, err)
	}
	out := EventPage{Events: evs}
	if len(evs) == f.Limit {
		out.Next = strconv.FormatInt(evs[len(evs)-1].Seq, 10)
	}
	return out, nil
}
