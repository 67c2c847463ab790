package index

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// DecisionFilter selects decisions; zero fields select everything.
type DecisionFilter struct {
	Digest string
	// Namespace matches where the decision was made, or where an allow it
	// gave was reused (admission).
	Namespace string
	// Policy matches one of the policies that judged (a decision names
	// every policy covering the image, comma-separated).
	Policy string
	// Allowed and Breakglass, when set, select by outcome.
	Allowed, Breakglass *bool
	Since, Until        time.Time
	// AfterAt and AfterID are a cursor: decisions after that one, in
	// (time, id) order.
	AfterAt time.Time
	AfterID string
	// Limit caps the page; zero means 100.
	Limit int
}

// likeEscape escapes s for a LIKE pattern with ESCAPE '\'.
func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// SearchDecisions returns the decisions f selects, oldest first, in a
// stable (time, id) order.
func (d *DB) SearchDecisions(ctx context.Context, f DecisionFilter) ([]Decision, error) {
	where, args := []string{"1 = 1"}, []any{}
	add := func(cond string, v ...any) {
		where = append(where, cond)
		args = append(args, v...)
	}
	if f.Digest != "" {
		add("digest = ?", f.Digest)
	}
	if f.Namespace != "" {
		add("(namespace = ? OR EXISTS (SELECT 1 FROM decision_reuse r WHERE r.decision_id = decisions.id AND r.namespace = ?))", f.Namespace, f.Namespace)
	}
	if f.Policy != "" {
		p := likeEscape(f.Policy)
		add(`(policy = ? OR policy LIKE ? ESCAPE '\' OR policy LIKE ? ESCAPE '\' OR policy LIKE ? ESCAPE '\')`, f.Policy, p+",%", "%,"+p, "%,"+p+",%")
	}
	if f.Allowed != nil {
		add("allowed = ?", *f.Allowed)
	}
	if f.Breakglass != nil {
		if *f.Breakglass {
			add("breakglass <> ''")
		} else {
			add("breakglass = ''")
		}
	}
	if !f.Since.IsZero() {
		add("at >= ?", f.Since.UTC())
	}
	if !f.Until.IsZero() {
		add("at < ?", f.Until.UTC())
	}
	if !f.AfterAt.IsZero() {
		add("(at > ? OR (at = ? AND id > ?))", f.AfterAt.UTC(), f.AfterAt.UTC(), f.AfterID)
	}
	if f.Limit <= 0 {
		f.Limit = 100
	}
	args = append(args, f.Limit)
	rows, err := d.db.QueryContext(ctx, d.q(`SELECT `+decisionColumns+` FROM decisions WHERE `+strings.Join(where, " AND ")+` ORDER BY at, id LIMIT ?`), args...)
	if err != nil {
		return nil, fmt.Errorf("search decisions: %w", err)
	}
	defer rows.Close()
	var out []Decision
	for rows.Next() {
		x, err := scanDecision(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, x)
	}
	return out, rows.Err()
}

// ReusesOf returns the reuse counts of each decision, by decision id.
func (d *DB) ReusesOf(ctx context.Context, ids []string) (map[string][]Reuse, error) {
	out := map[string][]Reuse{}
	for len(ids) > 0 {
		n := min(len(ids), chunk)
		args := make([]any, n)
		for i, id := range ids[:n] {
			args[i] = id
		}
		rows, err := d.db.QueryContext(ctx, d.q(`SELECT decision_id, namespace, workload_kind, workload_name, count, first_at, last_at
			FROM decision_reuse WHERE decision_id IN (`+placeholders(n)+`) ORDER BY decision_id, namespace, workload_kind, workload_name`), args...)
		if err != nil {
			return nil, fmt.Errorf("list decision reuse: %w", err)
		}
		for rows.Next() {
			var r Reuse
			var first, last dbTime
			if err := rows.Scan(&r.DecisionID, &r.Namespace, &r.WorkloadKind, &r.WorkloadName, &r.Count, &first, &last); err != nil {
				_ = rows.Close()
				return nil, err
			}
			r.First, r.Last = first.t, last.t
			out[r.DecisionID] = append(out[r.DecisionID], r)
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
		ids = ids[n:]
	}
	return out, nil
}

// Admission is where a digest was admitted: a namespace and workload, the
// first and last time, and how many allows (decided or reused from the
// verdict cache) admitted it there.
type Admission struct {
	Digest                                string
	Namespace, WorkloadKind, WorkloadName string
	First, Last                           time.Time
	Count                                 int64
	// Breakglass is true when any of those allows was by breakglass.
	Breakglass bool
}

// Admissions returns where each digest was admitted, from the allows
// recorded with a namespace and the cached allows reused in one: the
// admission inventory. Ordered by digest, then first time.
func (d *DB) Admissions(ctx context.Context, digests []string) ([]Admission, error) {
	type key struct{ digest, ns, kind, name string }
	acc := map[key]*Admission{}
	add := func(k key, first, last time.Time, n int64, glass bool) {
		a, ok := acc[k]
		if !ok {
			acc[k] = &Admission{Digest: k.digest, Namespace: k.ns, WorkloadKind: k.kind, WorkloadName: k.name, First: first, Last: last, Count: n, Breakglass: glass}
			return
		}
		if first.Before(a.First) {
			a.First = first
		}
		if last.After(a.Last) {
			a.Last = last
		}
		a.Count += n
		a.Breakglass = a.Breakglass || glass
	}
	for len(digests) > 0 {
		n := min(len(digests), chunk)
		args := make([]any, 0, n+1)
		for _, dg := range digests[:n] {
			args = append(args, dg)
		}
		in := placeholders(n)
		rows, err := d.db.QueryContext(ctx, d.q(`SELECT digest, namespace, workload_kind, workload_name, MIN(at), MAX(at), COUNT(*), MAX(breakglass)
			FROM decisions WHERE digest IN (`+in+`) AND allowed = ? AND namespace <> ''
			GROUP BY digest, namespace, workload_kind, workload_name`), append(args, true)...)
		if err != nil {
			return nil, fmt.Errorf("list admissions: %w", err)
		}
		for rows.Next() {
			var k key
			var first, last dbTime
			var c int64
			var glass string
			if err := rows.Scan(&k.digest, &k.ns, &k.kind, &k.name, &first, &last, &c, &glass); err != nil {
				_ = rows.Close()
				return nil, err
			}
			add(k, first.t, last.t, c, glass != "")
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
		rows, err = d.db.QueryContext(ctx, d.q(`SELECT x.digest, r.namespace, r.workload_kind, r.workload_name, MIN(r.first_at), MAX(r.last_at), CAST(SUM(r.count) AS BIGINT), MAX(x.breakglass)
			FROM decision_reuse r JOIN decisions x ON x.id = r.decision_id
			WHERE x.digest IN (`+in+`) AND r.namespace <> ''
			GROUP BY x.digest, r.namespace, r.workload_kind, r.workload_name`), args[:n]...)
		if err != nil {
			return nil, fmt.Errorf("list admissions: %w", err)
		}
		for rows.Next() {
			var k key
			var first, last dbTime
			var c int64
			var glass string
			if err := rows.Scan(&k.digest, &k.ns, &k.kind, &k.name, &first, &last, &c, &glass); err != nil {
				_ = rows.Close()
				return nil, err
			}
			add(k, first.t, last.t, c, glass != "")
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
		digests = digests[n:]
	}
	out := make([]Admission, 0, len(acc))
	for _, a := range acc {
		out = append(out, *a)
	}
	slices.SortFunc(out, func(a, b Admission) int {
		if c := strings.Compare(a.Digest, b.Digest); c != 0 {
			return c
		}
		if c := a.First.Compare(b.First); c != 0 {
			return c
		}
		return strings.Compare(a.Namespace+"/"+a.WorkloadKind+"/"+a.WorkloadName, b.Namespace+"/"+b.WorkloadKind+"/"+b.WorkloadName)
	})
	return out, nil
}
