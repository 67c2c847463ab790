package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/attestd/attestd/api/client"
	"github.com/attestd/attestd/api/wire"
)

func auditCmd(g *globals) *cobra.Command {
	a := &cobra.Command{Use: "audit", Short: "Read attestd's record: who uploaded, signed, attested and admitted what (auditor)"}
	var q client.EventQuery
	var since, until string
	var all bool
	events := &cobra.Command{
		Use:   "events",
		Short: "List recorded events, oldest first",
		Long: "List the events attestd recorded: uploads, signatures, attestations, provenance, SBOMs, gate\n" +
			"decisions, key, token and policy changes. Each names its actor, subject, key version, request id\n" +
			"and registry locations. --since/--until take RFC 3339 times or durations back from now (24h).",
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			if q.Since, err = when(since); err != nil {
				return fmt.Errorf("--since: %w", err)
			}
			if q.Until, err = when(until); err != nil {
				return fmt.Errorf("--until: %w", err)
			}
			var evs []wire.Event
			for {
				page, err := cl.Events(c.Context(), q)
				if err != nil {
					return err
				}
				evs = append(evs, page.Events...)
				if !all || page.NextCursor == "" {
					q.Cursor = page.NextCursor
					break
				}
				q.Cursor = page.NextCursor
			}
			out := wire.EventsResponse{Events: evs, NextCursor: q.Cursor}
			if out.Events == nil {
				out.Events = []wire.Event{}
			}
			return g.print(c.OutOrStdout(), out, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "TIME\tKIND\tACTOR\tSUBJECT\tKEY\tLOCATIONS\tREQUEST\tLOG")
				for _, e := range evs {
					subject := "-"
					if e.Repository != "" {
						subject = e.Repository + "@" + e.Digest
						if len(e.Tags) > 0 {
							subject += " (" + strings.Join(e.Tags, ",") + ")"
						}
					}
					key := "-"
					if e.Key != nil {
						key = e.Key.Name
						if e.Key.Version != "" {
							key += " v" + e.Key.Version
						}
					}
					logIndex := "-"
					if e.LogIndex != nil {
						logIndex = fmt.Sprint(*e.LogIndex)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.At.Format(time.RFC3339), e.Kind, actor(e.Actor), subject, key, locations(e), dash(e.RequestID), logIndex)
				}
				_ = tw.Flush()
				if out.NextCursor != "" {
					fmt.Fprintf(w, "more: --cursor %s (or --all)\n", out.NextCursor)
				}
			})
		},
	}
	f := events.Flags()
	f.StringVar(&q.Digest, "digest", "", "only events about this digest (sha256:…)")
	f.StringVar(&q.Kind, "kind", "", "only this kind (signature.created) or prefix (signature.*)")
	f.StringVar(&q.Actor, "actor", "", "only this actor (token name or id)")
	f.StringVar(&since, "since", "", "from this time (RFC 3339) or duration ago (24h)")
	f.StringVar(&until, "until", "", "before this time (RFC 3339) or duration ago")
	f.StringVar(&q.Cursor, "cursor", "", "continue a listing from its cursor")
	f.IntVar(&q.Limit, "limit", 100, "events per page (at most 1000)")
	f.BoolVar(&all, "all", false, "follow the cursor to the end")
	a.AddCommand(events, logKeyCmd(g), verifyLogCmd(g))
	a.AddCommand(showCmd(g), searchCmd(g), decisionsCmd(g), packagesCmd(g))
	return a
}

// when reads an RFC 3339 time, or a duration back from now.
func when(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: want an RFC 3339 time or a duration such as 24h", s)
	}
	return time.Now().Add(-d), nil
}

func actor(a wire.Actor) string {
	if a.Name == "" {
		return a.Kind
	}
	return a.Name
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// locations prints where an event wrote, by layout: the manifest digests.
func locations(e wire.Event) string {
	var ls []wire.Location
	if len(e.Locations) == 0 || json.Unmarshal(e.Locations, &ls) != nil || len(ls) == 0 {
		return "-"
	}
	var parts []string
	for _, l := range ls {
		ref := l.Ref
		if i := strings.LastIndex(ref, "@"); i >= 0 {
			ref = ref[i+1:]
		}
		if len(ref) > 19 {
			ref = ref[:19]
		}
		parts = append(parts, l.Kind+":"+ref)
	}
	return strings.Join(parts, ",")
}
