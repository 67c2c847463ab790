package service

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/attestd/attestd/keys"
	"github.com/attestd/attestd/storage/index"
)

type keyStore interface {
	Keys(ctx context.Context) ([]index.KeyRecord, error)
	SaveKeys(ctx context.Context, recs []index.KeyRecord, evs ...index.Event) (int64, error)
	Revision(ctx context.Context, name string) (int64, error)
}

// KeyLifecycle lists the key set and rotates and revokes keys at run time.
// Every change is stored in the index before it takes effect, and bumps the
// key-set revision.
type KeyLifecycle struct {
	mu    sync.Mutex
	set   *keys.Set
	store keyStore
	rec   preparer
	log   *slog.Logger
	now   func() time.Time
}

// NewKeyLifecycle reconciles the configured key set with the states stored
// in the index: a key keeps its state and window across restarts, a key
// dropped from the configuration stays to verify (retired), and a rotation
// made through the API outlives the configured default.
//
// Rotations and revocations are recorded as events in the same transaction
// as the change (rec prepares them). Reload applies changes another
// replica made.
func NewKeyLifecycle(ctx context.Context, set *keys.Set, store keyStore, rec preparer, log *slog.Logger) (*KeyLifecycle, error) {
	l := &KeyLifecycle{set: set, store: store, rec: rec, log: log, now: time.Now}
	recs, err := store.Keys(ctx)
	if err != nil {
		return nil, err
	}
	byName := map[string]index.KeyRecord{}
	for _, r := range recs {
		byName[r.Name] = r
	}
	now := l.now().UTC().Truncate(time.Second)
	statuses := map[string]keys.Status{}
	def := set.Default()
	storedDef := ""
	for _, e := range set.All() {
		k := e.Key
		r, ok := byName[k.Name()]
		delete(byName, k.Name())
		switch {
		case !ok:
			statuses[k.Name()] = keys.Status{State: keys.Active, NotBefore: now}
		case r.KeyID != k.ID():
			// The name now points at another key: keep the old one to verify.
			statuses[k.Name()] = keys.Status{State: keys.Active, NotBefore: now}
			r.Name = r.Name + "@" + strings.TrimPrefix(r.KeyID, "sha256:")[:12]
			if r.State == string(keys.Active) {
				r.State, r.NotAfter = string(keys.Retired), &now
			}
			r.Default = false
			byName[r.Name] = r
			log.WarnContext(ctx, "key name now names another key; the old key is kept to verify", "key", k.Name(), "old", r.Name)
		default:
			statuses[k.Name()] = status(r)
			if r.Default {
				storedDef = k.Name()
			}
		}
	}
	for _, r := range byName { // in the index, no longer configured
		if _, ok := set.ByID(r.KeyID); ok {
			continue // the same key, configured under another name now
		}
		st := status(r)
		if st.State == keys.Active {
			st.State, st.NotAfter = keys.Retired, &now
		}
		pub, err := cryptoutils.UnmarshalPEMToPublicKey([]byte(r.PublicPEM))
		if err != nil {
			return nil, fmt.Errorf("stored key %s: %w", r.Name, err)
		}
		k, err := keys.NewVerifyOnly(r.Name, pub)
		if err != nil {
			return nil, err
		}
		if err := set.Add(k, st); err != nil {
			return nil, err
		}
	}
	if storedDef != "" && statuses[storedDef].State == keys.Active {
		def = storedDef
	}
	if st := statuses[def]; st.State != keys.Active {
		return nil, fmt.Errorf("default key %s is %s: configure an active default key", def, st.State)
	}
	if _, err := l.commit(ctx, statuses, def, true); err != nil {
		return nil, err
	}
	return l, nil
}

// Reload applies the key states stored by any replica, when the key-set
// revision moved: a key revoked elsewhere is revoked here too, and a key
// known only from the index verifies (it signs nothing).
func (l *KeyLifecycle) Reload(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reload(ctx)
}

func (l *KeyLifecycle) reload(ctx context.Context) error {
	rev, err := l.store.Revision(ctx, index.RevisionKeys)
	if err != nil {
		return err
	}
	if rev == l.set.Revision() {
		return nil
	}
	recs, err := l.store.Keys(ctx)
	if err != nil {
		return err
	}
	statuses := map[string]keys.Status{}
	def := l.set.Default()
	for _, r := range recs {
		k, _, err := l.set.Get(r.Name)
		switch {
		case err == nil && k.ID() != r.KeyID:
			continue // this name is configured here as another key
		case err != nil:
			if _, known := l.set.ByID(r.KeyID); known {
				continue
			}
			pub, err := cryptoutils.UnmarshalPEMToPublicKey([]byte(r.PublicPEM))
			if err != nil {
				return fmt.Errorf("stored key %s: %w", r.Name, err)
			}
			vk, err := keys.NewVerifyOnly(r.Name, pub)
			if err != nil {
				return err
			}
			if err := l.set.Add(vk, status(r)); err != nil {
				return err
			}
			continue
		}
		statuses[r.Name] = status(r)
		if r.Default {
			def = r.Name
		}
	}
	if err := l.set.Apply(statuses, def, rev); err != nil {
		return err
	}
	l.log.InfoContext(ctx, "key set reloaded", "revision", rev, "default", def)
	return nil
}

func status(r index.KeyRecord) keys.Status {
	return keys.Status{State: keys.State(r.State), NotBefore: r.NotBefore, NotAfter: r.NotAfter, RevokedAt: r.RevokedAt, Reason: r.Reason}
}

// commit stores the changed statuses and the default, with evs, then
// applies them to the set. With all, every key is written (reconciling the
// configuration at start); otherwise only the changed keys, so that
// replicas changing different keys do not overwrite each other.
func (l *KeyLifecycle) commit(ctx context.Context, changed map[string]keys.Status, def string, all bool, evs ...index.Event) (*uint64, error) {
	var recs []index.KeyRecord
	for _, e := range l.set.All() {
		st, ok := changed[e.Key.Name()]
		if !ok {
			if !all {
				continue
			}
			st = e.Status
		}
		recs = append(recs, index.KeyRecord{
			Name: e.Key.Name(), KeyID: e.Key.ID(), PublicPEM: string(e.Key.PublicKeyPEM()), State: string(st.State),
			Default: e.Key.Name() == def, NotBefore: st.NotBefore, NotAfter: st.NotAfter, RevokedAt: st.RevokedAt, Reason: st.Reason,
		})
	}
	rev, err := l.store.SaveKeys(ctx, recs, evs...)
	if err != nil {
		return nil, err
	}
	if err := l.set.Apply(changed, def, rev); err != nil {
		return nil, err
	}
	// The change is stored and in force; it is acknowledged once its
	// event is in the audit log too.
	idx, err := l.rec.Sequence(ctx, evs...)
	if err != nil || len(idx) == 0 {
		return nil, err
	}
	return &idx[0], nil
}

// KeyInfo describes a key of the set.
type KeyInfo struct {
	ID           string
	Name         string
	Ref          string
	Version      string
	State        string
	Default      bool
	CanSign      bool
	Repositories []string
	PublicKey    string
	NotBefore    time.Time
	NotAfter     *time.Time
	RevokedAt    *time.Time
	Reason       string
}

// KeySet is the listing of the key set and its revision.
type KeySet struct {
	Revision int64
	Keys     []KeyInfo
	// LogIndex is the audit log index of the change's event, in the
	// answer to a rotation or revocation.
	LogIndex *uint64
}

// List returns every key, the default first. It needs no KMS.
func (l *KeyLifecycle) List() KeySet {
	out := KeySet{Revision: l.set.Revision()}
	for _, e := range l.set.All() {
		out.Keys = append(out.Keys, KeyInfo{
			ID: e.Key.ID(), Name: e.Key.Name(), Ref: e.Key.Ref(), Version: e.Key.Version(), State: string(e.Status.State), Default: e.Default,
			CanSign: e.Key.CanSign(), Repositories: e.Key.Repositories(), PublicKey: string(e.Key.PublicKeyPEM()),
			NotBefore: e.Status.NotBefore, NotAfter: e.Status.NotAfter, RevokedAt: e.Status.RevokedAt, Reason: e.Status.Reason,
		})
	}
	return out
}

// Activate makes name the default signing key, without a restart. The
// previous default is retired: its signatures made until now still verify,
// and it signs no more.
func (l *KeyLifecycle) Activate(ctx context.Context, p Principal, name string) (KeySet, error) {
	if err := Authorize(p, ActionManageKeys); err != nil {
		return KeySet{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.reload(ctx); err != nil {
		return KeySet{}, fmt.Errorf("%w: read the key set: %w", ErrUnavailable, err)
	}
	k, st, err := l.set.Get(name)
	if err != nil || name == "" {
		return KeySet{}, fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	if st.State != keys.Active || !k.CanSign() {
		return KeySet{}, fmt.Errorf("%w: key %s is %s and cannot become the signing key; configure a new key", ErrInvalid, name, st.State)
	}
	old := l.set.Default()
	if old == name {
		return l.List(), nil
	}
	now := l.now().UTC().Truncate(time.Second)
	_, oldSt, err := l.set.Get(old)
	if err != nil {
		return KeySet{}, err
	}
	oldSt.State, oldSt.NotAfter = keys.Retired, &now
	ev, err := l.rec.Prepare(ctx, Event{Kind: EventKeyActivated, Actor: p, KeyID: k.ID(), KeyName: name, KeyVersion: k.Version(),
		Detail: map[string]any{"previous": old, "retired_at": now}})
	if err != nil {
		return KeySet{}, err
	}
	// The new default's record is written too: its default flag changes.
	li, err := l.commit(ctx, map[string]keys.Status{old: oldSt, name: st}, name, false, ev)
	if err != nil {
		return KeySet{}, fmt.Errorf("%w: store the rotation: %w", ErrUnavailable, err)
	}
	l.log.InfoContext(ctx, "signing key rotated", "from", old, "to", name, "by", p.Name, "revision", l.set.Revision())
	out := l.List()
	out.LogIndex = li
	return out, nil
}

// Revoke revokes name: everything it signed fails verification from now
// on, with a reason naming the revocation. The default key cannot be
// revoked; activate another first.
func (l *KeyLifecycle) Revoke(ctx context.Context, p Principal, name, reason string) (KeySet, error) {
	if err := Authorize(p, ActionManageKeys); err != nil {
		return KeySet{}, err
	}
	reason = strings.TrimSpace(reason)
	if reason == "" || len(reason) > 500 {
		return KeySet{}, fmt.Errorf("%w: a revocation needs a reason of at most 500 characters", ErrInvalid)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.reload(ctx); err != nil {
		return KeySet{}, fmt.Errorf("%w: read the key set: %w", ErrUnavailable, err)
	}
	k, st, err := l.set.Get(name)
	if err != nil || name == "" {
		return KeySet{}, fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	if name == l.set.Default() {
		return KeySet{}, fmt.Errorf("%w: %s is the default signing key; activate another key first", ErrInvalid, name)
	}
	if st.State == keys.Revoked {
		return l.List(), nil
	}
	now := l.now().UTC().Truncate(time.Second)
	st.State, st.RevokedAt, st.Reason = keys.Revoked, &now, reason
	ev, err := l.rec.Prepare(ctx, Event{Kind: EventKeyRevoked, Actor: p, KeyID: k.ID(), KeyName: name, KeyVersion: k.Version(),
		Detail: map[string]any{"reason": reason, "revoked_at": now}})
	if err != nil {
		return KeySet{}, err
	}
	li, err := l.commit(ctx, map[string]keys.Status{name: st}, l.set.Default(), false, ev)
	if err != nil {
		return KeySet{}, fmt.Errorf("%w: store the revocation: %w", ErrUnavailable, err)
	}
	l.log.InfoContext(ctx, "key revoked", "key", name, "by", p.Name, "revision", l.set.Revision())
	out := l.List()
	out.LogIndex = li
	return out, nil
}
