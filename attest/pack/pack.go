// Package pack is the evidence pack format: one tar holding everything
// attestd knows about one artifact digest (its manifest, every signature and
// attestation in its original bytes, the keys, the gate decisions, the
// audit-log entries with inclusion proofs and the checkpoint, and a
// SUMMARY.md), signed as a whole.
//
// The signature is a DSSE envelope, MANIFEST.dsse.json, the tar's first
// member: its payload (type PayloadType) is the JSON manifest listing the
// SHA-256 and size of every other member, signed with attestd's key
// (ECDSA P-256, SHA-256 by default), so `attestctl evidence verify --key
// attestd.pub` checks the whole pack offline.
//
// Read is a parser of untrusted input: it bounds the member count, each
// member's size and the total, refuses names that are not plain relative
// paths, duplicates, and anything but regular files. It is fuzzed. The
// package does no I/O beyond the reader it is given and MUST NOT import
// net/http, os, keys or storage.
package pack

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/attestd/attestd/attest"
)

// PayloadType is the DSSE payload type of a pack's manifest.
const PayloadType = "application/vnd.attestd.evidence-pack.v1+json"

// ManifestName is the signed manifest, the pack's first member.
const ManifestName = "MANIFEST.dsse.json"

// Limits bound what Read accepts.
type Limits struct {
	MaxMembers    int
	MaxMemberSize int64
	MaxTotal      int64
}

// DefaultLimits are the bounds attestctl verifies with.
var DefaultLimits = Limits{MaxMembers: 4096, MaxMemberSize: 64 << 20, MaxTotal: 512 << 20}

// Errors Verify reports; each wraps what broke and names the member.
var (
	// ErrFormat means the tar or the manifest is malformed or over a bound.
	ErrFormat = errors.New("malformed evidence pack")
	// ErrSignature means the manifest's signature does not verify with the key.
	ErrSignature = errors.New("pack signature does not verify")
	// ErrMember means a member is missing, added, or not the bytes the
	// signed manifest lists.
	ErrMember = errors.New("pack member does not match the signed manifest")
)

// Member is one file of the pack as the manifest lists it.
type Member struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// Manifest is the signed list of members.
type Manifest struct {
	Version int    `json:"version"`
	Subject string `json:"subject"`
	// Created is when attestd wrote the pack.
	Created time.Time `json:"created"`
	// KeyID is the id of the key that signed it.
	KeyID   string   `json:"key_id,omitempty"`
	Members []Member `json:"members"`
}

// File is a member to write.
type File struct {
	Name string
	Data []byte
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}(/[A-Za-z0-9][A-Za-z0-9._-]{0,99}){0,3}$`)

// Write writes the pack: the manifest of files signed by sign (which
// returns a signature over the DSSE pre-authentication encoding it is
// given), then the files, in order, with a fixed modification time. A pack
// over DefaultLimits is refused (ErrFormat): what is written can be read.
func Write(w io.Writer, m Manifest, files []File, sign func(pae []byte) ([]byte, error)) error {
	m.Version = 1
	m.Members = nil
	seen := map[string]bool{ManifestName: true}
	if len(files) > DefaultLimits.MaxMembers {
		return fmt.Errorf("%w: %d members, over %d", ErrFormat, len(files), DefaultLimits.MaxMembers)
	}
	var total int64
	for _, f := range files {
		if !nameRE.MatchString(f.Name) || seen[f.Name] {
			return fmt.Errorf("%w: member name %q", ErrFormat, f.Name)
		}
		if total += int64(len(f.Data)); int64(len(f.Data)) > DefaultLimits.MaxMemberSize || total > DefaultLimits.MaxTotal-(1<<20) {
			return fmt.Errorf("%w: member %s makes the pack larger than a verifier reads", ErrFormat, f.Name)
		}
		seen[f.Name] = true
		sum := sha256.Sum256(f.Data)
		m.Members = append(m.Members, Member{Name: f.Name, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(f.Data))})
	}
	payload, err := json.Marshal(m)
	if err != nil {
		return err
	}
	sig, err := sign(attest.PAE(PayloadType, payload))
	if err != nil {
		return fmt.Errorf("sign the pack: %w", err)
	}
	env, err := attest.Envelope(PayloadType, payload, sig)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	add := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: m.Created, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	if err := add(ManifestName, env); err != nil {
		return err
	}
	for _, f := range files {
		if err := add(f.Name, f.Data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// Pack is a pack as read: its members by name and the manifest envelope.
// Nothing in it is trusted until Verify succeeds.
type Pack struct {
	Envelope []byte
	Members  map[string][]byte
	// Order is the order of the members in the tar.
	Order []string
}

// Read reads a pack within lim. It checks the tar's shape only.
func Read(r io.Reader, lim Limits) (*Pack, error) {
	p := &Pack{Members: map[string][]byte{}}
	tr := tar.NewReader(r)
	var total int64
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrFormat, err)
		}
		if h.Name != ManifestName && len(p.Order) >= lim.MaxMembers {
			return nil, fmt.Errorf("%w: more than %d members", ErrFormat, lim.MaxMembers)
		}
		if h.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("%w: member %q is not a regular file", ErrFormat, h.Name)
		}
		if h.Name != ManifestName && !nameRE.MatchString(h.Name) {
			return nil, fmt.Errorf("%w: member name %q", ErrFormat, h.Name)
		}
		if _, dup := p.Members[h.Name]; dup || (h.Name == ManifestName && p.Envelope != nil) {
			return nil, fmt.Errorf("%w: member %q twice", ErrFormat, h.Name)
		}
		if h.Size < 0 || h.Size > lim.MaxMemberSize {
			return nil, fmt.Errorf("%w: member %q of %d bytes, over %d", ErrFormat, h.Name, h.Size, lim.MaxMemberSize)
		}
		if total += h.Size; total > lim.MaxTotal {
			return nil, fmt.Errorf("%w: over %d bytes in all", ErrFormat, lim.MaxTotal)
		}
		b, err := io.ReadAll(io.LimitReader(tr, h.Size+1))
		if err != nil {
			return nil, fmt.Errorf("%w: member %q: %w", ErrFormat, h.Name, err)
		}
		if int64(len(b)) != h.Size {
			return nil, fmt.Errorf("%w: member %q is %d bytes, its header says %d", ErrFormat, h.Name, len(b), h.Size)
		}
		if h.Name == ManifestName {
			p.Envelope = b
			continue
		}
		p.Members[h.Name] = b
		p.Order = append(p.Order, h.Name)
	}
	if p.Envelope == nil {
		return nil, fmt.Errorf("%w: no %s", ErrFormat, ManifestName)
	}
	return p, nil
}

// Verify checks the manifest's signature with v, then that the members
// are exactly those it lists, byte for byte. It returns the manifest.
func (p *Pack) Verify(v signature.Verifier) (Manifest, error) {
	env, err := attest.ParseEnvelope(p.Envelope)
	if err != nil {
		return Manifest{}, fmt.Errorf("%w: %s: %w", ErrFormat, ManifestName, err)
	}
	if env.PayloadType != PayloadType {
		return Manifest{}, fmt.Errorf("%w: %s has payload type %q", ErrFormat, ManifestName, env.PayloadType)
	}
	ok := false
	for _, sig := range env.Signatures {
		if v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(attest.PAE(env.PayloadType, env.Payload))) == nil {
			ok = true
			break
		}
	}
	if !ok {
		return Manifest{}, fmt.Errorf("%w: %s is not signed by the given key (or was edited)", ErrSignature, ManifestName)
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(env.Payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("%w: the signed manifest: %w", ErrFormat, err)
	}
	if m.Version != 1 {
		return Manifest{}, fmt.Errorf("%w: the signed manifest has version %d, not 1", ErrFormat, m.Version)
	}
	listed := map[string]bool{}
	var errs []error
	for _, mem := range m.Members {
		listed[mem.Name] = true
		b, ok := p.Members[mem.Name]
		if !ok {
			errs = append(errs, fmt.Errorf("%w: %s is missing", ErrMember, mem.Name))
			continue
		}
		sum := sha256.Sum256(b)
		if int64(len(b)) != mem.Size || hex.EncodeToString(sum[:]) != mem.SHA256 {
			errs = append(errs, fmt.Errorf("%w: %s was altered (sha256 %x, signed %s)", ErrMember, mem.Name, sum, mem.SHA256))
		}
	}
	var extra []string
	for name := range p.Members {
		if !listed[name] {
			extra = append(extra, name)
		}
	}
	sort.Strings(extra)
	for _, name := range extra {
		errs = append(errs, fmt.Errorf("%w: %s was added", ErrMember, name))
	}
	if len(errs) > 0 {
		return Manifest{}, errors.Join(errs...)
	}
	return m, nil
}

// Names lists the members under dir ("signatures/"), in tar order.
func (p *Pack) Names(dir string) []string {
	var out []string
	for _, n := range p.Order {
		if len(n) > len(dir) && n[:len(dir)] == dir {
			out = append(out, n)
		}
	}
	return slices.Clip(out)
}
