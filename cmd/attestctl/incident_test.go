package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/attestd/attestd/api/wire"
)

// TestWalkthroughQuarantine follows the README's incident response on the
// demo image: quarantining its digest makes attestctl verify deny at once
// (the allow cached by the walk-through's verify included), naming the
// quarantine; the quarantine is listed and recorded; lifting it restores
// the allow; deployments says where the digest ran.
func TestWalkthroughQuarantine(t *testing.T) {
	d := walkthrough(t)
	admin := d.s.AdminToken
	verify := func() (wire.Decision, error) {
		t.Helper()
		out, err := run(t, d.verifier, d.srv, "verify", d.image, "--policy", "demo", "-o", "json")
		var dec wire.Decision
		if jerr := json.Unmarshal([]byte(out), &dec); jerr != nil && err == nil {
			t.Fatalf("verify -o json: %v\n%s", jerr, out)
		}
		return dec, err
	}
	if dec, err := verify(); err != nil || !dec.Allow || !dec.Cached {
		t.Fatalf("before the quarantine, the demo digest's allow is cached: %+v %v", dec, err)
	}

	if out, err := run(t, d.verifier, d.srv, "quarantine", "add", d.digest, "--reason", "x"); err == nil {
		t.Errorf("a verifier quarantined a digest:\n%s", out)
	}
	if out, err := run(t, admin, d.srv, "quarantine", "add", d.digest); err == nil {
		t.Errorf("a quarantine without a reason:\n%s", out)
	}
	out, err := run(t, admin, d.srv, "quarantine", "add", d.repository+"@"+d.digest, "--reason", "CVE-2026-0001 in the base image", "-o", "json")
	if err != nil {
		t.Fatalf("quarantine add: %v\n%s", err, out)
	}
	var q wire.Quarantine
	if err := json.Unmarshal([]byte(out), &q); err != nil || q.ID == "" || q.Subject != d.digest || q.Kind != "digest" || q.LogIndex == nil {
		t.Fatalf("quarantine add -o json: %+v %v\n%s", q, err, out)
	}
	if out, err := run(t, admin, d.srv, "quarantine", "add", d.digest, "--reason", "again"); err == nil || !strings.Contains(out+err.Error(), "already") {
		t.Errorf("a digest quarantined twice: %v\n%s", err, out)
	}

	// At once: no poll, no wait for the cached verdict to age out.
	dec, err := verify()
	if err == nil || dec.Allow || dec.Cached {
		t.Fatalf("verify of the quarantined digest: %+v %v; want a deny, not the cached allow", dec, err)
	}
	for _, want := range []string{q.ID, "CVE-2026-0001", "bootstrap-admin"} {
		if !strings.Contains(dec.Reason, want) {
			t.Errorf("the deny's reason %q does not name %q", dec.Reason, want)
		}
	}

	out, err = run(t, d.auditor, d.srv, "quarantine", "list")
	if err != nil || !strings.Contains(out, q.ID) || !strings.Contains(out, "CVE-2026-0001") {
		t.Errorf("quarantine list (auditor): %v\n%s", err, out)
	}
	if out, err := run(t, d.verifier, d.srv, "quarantine", "list"); err == nil {
		t.Errorf("a verifier listed quarantines:\n%s", out)
	}

	if out, err := run(t, admin, d.srv, "quarantine", "lift", q.ID); err == nil {
		t.Errorf("a lift without a reason:\n%s", out)
	}
	out, err = run(t, admin, d.srv, "quarantine", "lift", q.ID, "--reason", "rebuilt on a patched base", "-o", "json")
	var lifted wire.Quarantine
	if err != nil || json.Unmarshal([]byte(out), &lifted) != nil || lifted.LiftedAt == nil || lifted.LiftReason != "rebuilt on a patched base" {
		t.Fatalf("quarantine lift: %v\n%s", err, out)
	}
	if out, err := run(t, admin, d.srv, "quarantine", "lift", q.ID, "--reason", "again"); err == nil {
		t.Errorf("a quarantine lifted twice:\n%s", out)
	}
	if dec, err := verify(); err != nil || !dec.Allow {
		t.Errorf("after the lift: %+v %v; want an allow", dec, err)
	}
	out, err = run(t, d.auditor, d.srv, "quarantine", "list", "--lifted", "--all", "-o", "json")
	var all []wire.Quarantine
	if err != nil || json.Unmarshal([]byte(out), &all) != nil || len(all) != 1 || all[0].LiftedBy == "" {
		t.Errorf("quarantine list --lifted: %v\n%s", err, out)
	}

	// Both changes are recorded events, with the actor.
	out, err = run(t, d.auditor, d.srv, "audit", "events", "--kind", "quarantine.*", "-o", "json")
	if err != nil || !strings.Contains(out, "quarantine.added") || !strings.Contains(out, "quarantine.lifted") || !strings.Contains(out, q.ID) {
		t.Errorf("the quarantine's events: %v\n%s", err, out)
	}

	// Where it ran: the walk-through's admission in namespace demo (an
	// allow reused from the cache: its count is flushed each second).
	var deps wire.DeploymentsResponse
	for range 30 {
		out, err = run(t, d.auditor, d.srv, "deployments", "--digest", d.digest, "-o", "json")
		if err != nil || json.Unmarshal([]byte(out), &deps) != nil || len(deps.Deployments) > 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil || len(deps.Deployments) == 0 || deps.Deployments[0].Namespace != "demo" || deps.Deployments[0].WorkloadName != "web" {
		t.Errorf("deployments --digest: %v\n%s", err, out)
	}
	if out, err := run(t, d.auditor, d.srv, "deployments"); err == nil {
		t.Errorf("deployments with no digest, key or compliance: want a 400\n%s", out)
	}
	if out, err := run(t, d.auditor, d.srv, "deployments", "--digest", d.digest, "--limit", "1001"); err == nil {
		t.Errorf("deployments over the page cap: want a 400\n%s", out)
	}
}
