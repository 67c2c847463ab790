package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/attestd/attestd/keys"
	"github.com/attestd/attestd/service"
	"github.com/attestd/attestd/storage/index"
	"github.com/attestd/attestd/storage/oci"
	"github.com/attestd/attestd/storage/registry"
)

// Reindex rebuilds the index's evidence rows from the registries of cfg
// (the embedded one read from the data dir, whether or not attestd is
// serving), for repos or every repository the registries' catalogs list.
// Keys are the ones the index knows, verify-only, with their states: a
// reindex signs nothing and changes no key state. progress, if set, is told
// after each digest.
func Reindex(ctx context.Context, cfg Config, repos []string, progress service.ReindexProgress, log *slog.Logger) (service.ReindexStats, error) {
	if err := cfg.Validate(); err != nil {
		return service.ReindexStats{}, err
	}
	db, err := OpenIndex(ctx, cfg)
	if err != nil {
		return service.ReindexStats{}, err
	}
	defer db.Close()
	set, err := StoredKeys(ctx, db)
	if err != nil {
		return service.ReindexStats{}, err
	}

	var hosts []oci.Host
	var names []string
	tr := oci.DefaultTransport().(*http.Transport)
	if cfg.EmbeddedRegistry.Enabled {
		name, err := embeddedName(cfg)
		if err != nil {
			return service.ReindexStats{}, err
		}
		// The embedded registry's storage, served in-process on loopback
		// for this run, under the name references use.
		h, err := registry.New(ctx, filepath.Join(cfg.DataDir, "registry"))
		if err != nil {
			return service.ReindexStats{}, err
		}
		ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
		if err != nil {
			return service.ReindexStats{}, err
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer func() { _ = srv.Close() }()
		local := ln.Addr().String()
		dial := (&net.Dialer{Timeout: 10 * time.Second}).DialContext
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if strings.EqualFold(addr, name) {
				addr = local
			}
			return dial(ctx, network, addr)
		}
		hosts = append(hosts, oci.Host{Name: name, Auth: authn.Anonymous})
		names = append(names, name)
	}
	ext, err := externalHosts(cfg)
	if err != nil {
		return service.ReindexStats{}, err
	}
	for _, h := range ext {
		hosts = append(hosts, h)
		names = append(names, h.Name)
	}
	var kc authn.Keychain
	if cfg.DockerConfig != "" {
		if kc, err = oci.DockerConfigKeychain(cfg.DockerConfig); err != nil {
			return service.ReindexStats{}, err
		}
	}
	regs, err := oci.NewRegistries(hosts, oci.Options{Keychain: kc, Transport: tr, UserAgent: "attestd-reindex/" + Version, MaxManifestBytes: cfg.MaxManifestBytes})
	if err != nil {
		return service.ReindexStats{}, err
	}
	defer regs.CloseIdleConnections()
	// Evidence found again is a new event: in the audit log too. (The
	// POSIX log's file locks let this run while attestd serves.)
	var opts []service.RecorderOption
	if !cfg.UnsafeNoAuditLog {
		l, _, err := openLog(ctx, cfg)
		if err != nil {
			return service.ReindexStats{}, err
		}
		defer func() { _ = l.Close(context.WithoutCancel(ctx)) }()
		opts = append(opts, service.WithAuditLog(l))
	}
	rec := service.NewRecorder(db, log, opts...)
	defer func() { _ = rec.Close(context.WithoutCancel(ctx)) }()
	r := service.NewReindex(regs, service.NewEvidence(regs, set), rec)
	return r.Run(ctx, names, repos, progress)
}

// embeddedName is the embedded registry's name in references, as serve
// names it.
func embeddedName(cfg Config) (string, error) {
	if cfg.EmbeddedRegistry.Host != "" {
		return cfg.EmbeddedRegistry.Host, nil
	}
	_, port, err := net.SplitHostPort(cfg.Listen)
	if err != nil || port == "0" {
		return "", errors.New("the embedded registry's name is not known: set --registry-host as serve has it")
	}
	return "localhost:" + port, nil
}

// StoredKeys is the key set the index knows, verify-only, with each key's
// stored state and window.
func StoredKeys(ctx context.Context, db *index.DB) (*keys.Set, error) {
	recs, err := db.Keys(ctx)
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, errors.New("the index knows no key: start attestd serve once first")
	}
	var ks []*keys.Key
	statuses := map[string]keys.Status{}
	def := recs[0].Name
	ids := map[string]bool{}
	for _, r := range recs {
		if ids[r.KeyID] {
			continue // the same key under two names: once is enough to verify
		}
		ids[r.KeyID] = true
		pub, err := cryptoutils.UnmarshalPEMToPublicKey([]byte(r.PublicPEM))
		if err != nil {
			return nil, fmt.Errorf("stored key %s: %w", r.Name, err)
		}
		k, err := keys.NewVerifyOnly(r.Name, pub)
		if err != nil {
			return nil, err
		}
		ks = append(ks, k)
		statuses[r.Name] = keys.Status{State: keys.State(r.State), NotBefore: r.NotBefore, NotAfter: r.NotAfter, RevokedAt: r.RevokedAt, Reason: r.Reason}
		if r.Default {
			def = r.Name
		}
	}
	set, err := keys.NewSet(def, ks...)
	if err != nil {
		return nil, err
	}
	rev, err := db.Revision(ctx, index.RevisionKeys)
	if err != nil {
		return nil, err
	}
	if err := set.Apply(statuses, def, rev); err != nil {
		return nil, err
	}
	return set, nil
}
