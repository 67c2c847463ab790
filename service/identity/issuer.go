package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
)

// maxDocumentBytes caps a discovery document or a JWKS.
const maxDocumentBytes = 1 << 20

// issuer is one pinned issuer: its discovery document and keys, fetched
// lazily and cached, and refreshed at most once per interval.
type issuer struct {
	cfg      Issuer
	client   *http.Client
	interval time.Duration
	now      func() time.Time

	mu        sync.Mutex
	jwksURL   string
	keys      jose.JSONWebKeySet
	lastFetch time.Time
	lastErr   error
	fetches   int
	verifier  *oidc.IDTokenVerifier
}

func newIssuer(cfg Issuer, client *http.Client, interval time.Duration, now func() time.Time) *issuer {
	is := &issuer{cfg: cfg, client: client, interval: interval, now: now}
	is.verifier = oidc.NewVerifier(cfg.URL, is, &oidc.Config{ClientID: cfg.Audience, SupportedSigningAlgs: cfg.Algorithms, Now: now})
	return is
}

// Fetches is how many times the issuer's JWKS was fetched (tests).
func (is *issuer) Fetches() int {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.fetches
}

func (is *issuer) verify(ctx context.Context, raw string) (*oidc.IDToken, error) {
	// Keys are fetched before the verifier asks for them, so that an issuer
	// that cannot be reached is told apart (503) from a bad token (401).
	if _, err := is.keysFor(ctx, "", false); err != nil {
		return nil, err
	}
	idt, err := is.verifier.Verify(ctx, raw)
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return idt, nil
}

// VerifySignature is oidc.KeySet: it verifies the JWS with the issuer's
// keys only. A key id it does not know triggers a refresh of the JWKS, at
// most once per interval; the token's own key headers are never used.
func (is *issuer) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(raw, allAlgorithms)
	if err != nil {
		return nil, fmt.Errorf("parse JWS: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("want exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	for attempt := 0; attempt < 2; attempt++ {
		keys, err := is.keysFor(ctx, kid, attempt > 0)
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			if payload, err := jws.Verify(k); err == nil {
				return payload, nil
			}
		}
	}
	return nil, errors.New("no key of the issuer verifies the token")
}

// keysFor returns the cached keys matching kid (all, if kid is empty). If
// none match and refresh is set, it fetches the JWKS again, unless it did
// within the interval.
func (is *issuer) keysFor(ctx context.Context, kid string, refresh bool) ([]jose.JSONWebKey, error) {
	is.mu.Lock()
	defer is.mu.Unlock()
	due := is.now().Sub(is.lastFetch) >= is.interval
	if is.lastFetch.IsZero() || (refresh || is.lastErr != nil) && due {
		is.lastErr = is.fetch(ctx)
	}
	if is.lastErr != nil {
		return nil, is.lastErr
	}
	if kid == "" {
		return is.keys.Keys, nil
	}
	return is.keys.Key(kid), nil
}

// fetch reads the discovery document (once) and the JWKS. Called with mu held.
func (is *issuer) fetch(ctx context.Context) error {
	is.lastFetch = is.now()
	if is.jwksURL == "" {
		var doc struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := is.get(ctx, is.cfg.URL+"/.well-known/openid-configuration", &doc); err != nil {
			return err
		}
		if doc.Issuer != is.cfg.URL {
			return fmt.Errorf("%w: discovery document names issuer %q, not %q", ErrUnavailable, doc.Issuer, is.cfg.URL)
		}
		u := is.cfg.JWKSURL
		if u == "" {
			u = doc.JWKSURI
		}
		iu, _ := url.Parse(is.cfg.URL)
		ju, err := url.Parse(u)
		if err != nil || ju.Host != iu.Host || ju.Scheme != iu.Scheme {
			return fmt.Errorf("%w: jwks_uri %q is not on the issuer's host %s", ErrUnavailable, u, iu.Host)
		}
		is.jwksURL = u
	}
	var set jose.JSONWebKeySet
	if err := is.get(ctx, is.jwksURL, &set); err != nil {
		return err
	}
	is.fetches++
	var keys []jose.JSONWebKey
	for _, k := range set.Keys {
		if k.IsPublic() && k.Valid() && (k.Use == "" || k.Use == "sig") {
			keys = append(keys, k)
		}
	}
	is.keys = jose.JSONWebKeySet{Keys: keys}
	return nil
}

func (is *issuer) get(ctx context.Context, u string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	resp, err := is.client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, is.cfg.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: %s answered %d", ErrUnavailable, u, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentBytes+1))
	if err != nil || len(b) > maxDocumentBytes {
		return fmt.Errorf("%w: %s: body over %d bytes or unreadable", ErrUnavailable, u, maxDocumentBytes)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, u, err)
	}
	return nil
}
