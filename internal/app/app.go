// Package app wires attestd's parts from a Config: the index, the key, the
// registries, the services and the HTTP API. It holds no business logic.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/riverqueue/river"
	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/attestd/attestd/api"
	"github.com/attestd/attestd/api/ui"
	"github.com/attestd/attestd/internal/notify"
	"github.com/attestd/attestd/keys"
	"github.com/attestd/attestd/service"
	"github.com/attestd/attestd/service/identity"
	"github.com/attestd/attestd/service/policy"
	"github.com/attestd/attestd/storage/archive"
	"github.com/attestd/attestd/storage/auditlog"
	"github.com/attestd/attestd/storage/index"
	"github.com/attestd/attestd/storage/jobs"
	"github.com/attestd/attestd/storage/oci"
	"github.com/attestd/attestd/storage/registry"
)

// Version is attestd's version, set at build time.
var Version = "dev"

// AdminTokenFile is the name of the bootstrap admin token file in the data dir.
const AdminTokenFile = "admin.token"

// App is a wired attestd server.
type App struct {
	sboms  *service.SBOMs
	vsas   *service.VSAs
	rec    *service.Recorder
	alog   *auditlog.Log
	logKey auditlog.Key
	outbox *service.LogOutbox
	sync   *service.Sync
	jobsDB interface{ Close() error }
	srv    *http.Server
	// tlsLn serves the same handler over HTTPS (tls_listen), for the
	// admission webhooks and clients that want TLS; tlsSrv serves it.
	tlsLn    net.Listener
	tlsSrv   *http.Server
	regs     *oci.Registries
	ln       net.Listener
	db       *index.DB
	log      *slog.Logger
	cfg      Config
	regHost  string
	keyID    string
	shutdown time.Duration
}

// New builds attestd from cfg, serving on ln. keyPassword may be empty: the
// generated password file in the data dir is used then.
func New(ctx context.Context, cfg Config, keyPassword string, ln net.Listener, log *slog.Logger) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if ln == nil && cfg.EmbeddedRegistry.Enabled {
		return nil, errors.New("attestd worker works on external registries: set --embedded-registry=false and --registries")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	db, err := OpenIndex(ctx, cfg)
	if err != nil {
		return nil, err
	}
	a := &App{ln: ln, db: db, log: log, cfg: cfg, shutdown: cfg.ShutdownTimeout}
	if cfg.TLSListen != "" && ln != nil {
		certs, err := newCertReloader(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			_ = db.Close()
			return nil, err
		}
		tln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.TLSListen)
		if err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("tls_listen: %w", err)
		}
		a.tlsLn = tls.NewListener(tln, certs.tlsConfig())
	}
	var opts []service.RecorderOption
	if !cfg.UnsafeNoAuditLog {
		// tessera logs through klog, process-wide: into attestd's log.
		auditlog.RouteLogs(log)
		l, key, err := openLog(ctx, cfg)
		if err != nil {
			_ = db.Close()
			return nil, err
		}
		a.alog, a.logKey = l, key
		opts = append(opts, service.WithAuditLog(a.alog))
	}
	a.rec = service.NewRecorder(db, log, opts...)
	if a.alog != nil {
		grace := cfg.LogOutboxGrace
		if grace <= 0 {
			grace = 15 * time.Second
		}
		a.outbox = service.NewLogOutbox(db, a.alog, a.rec, grace, time.Second, log)
	}
	if err := a.wire(ctx, keyPassword); err != nil {
		if a.tlsLn != nil {
			_ = a.tlsLn.Close()
		}
		_ = a.rec.Close(ctx)
		if a.alog != nil {
			_ = a.alog.Close(ctx)
		}
		_ = db.Close()
		return nil, err
	}
	return a, nil
}

// openLog opens the audit log the configuration names, with its key:
// MySQL/MariaDB at log_database_url (replicas), or the POSIX log in
// log_dir (default: log in the data dir).
func openLog(ctx context.Context, cfg Config) (*auditlog.Log, auditlog.Key, error) {
	keyPath := cfg.LogKeyFile
	if keyPath == "" {
		keyPath = filepath.Join(cfg.DataDir, auditlog.KeyFile)
	}
	origin := cfg.LogOrigin
	if _, err := os.Stat(keyPath); origin == "" && errors.Is(err, os.ErrNotExist) {
		origin = "attestd/" + defaultOriginHost(cfg)
	}
	key, err := auditlog.EnsureKey(keyPath, origin)
	if err != nil {
		return nil, auditlog.Key{}, err
	}
	opts := auditlog.Options{Signer: key.Signer}
	var l *auditlog.Log
	if cfg.LogDatabaseURL != "" {
		l, err = auditlog.OpenMySQL(ctx, cfg.LogDatabaseURL, opts)
	} else {
		dir := cfg.LogDir
		if dir == "" {
			dir = filepath.Join(cfg.DataDir, "log")
		}
		l, err = auditlog.OpenPOSIX(ctx, dir, opts)
	}
	if err != nil {
		return nil, auditlog.Key{}, err
	}
	return l, key, nil
}

// defaultOriginHost names a new log: the embedded registry's configured
// name, else the first external registry, else the hostname.
func defaultOriginHost(cfg Config) string {
	switch {
	case cfg.EmbeddedRegistry.Host != "":
		return cfg.EmbeddedRegistry.Host
	case len(cfg.Registries) > 0:
		return cfg.Registries[0].Host
	}
	if h, err := os.Hostname(); err == nil && validOrigin("attestd/"+h) {
		return h
	}
	return "localhost"
}

// OpenIndex opens the index the configuration names: PostgreSQL at
// database_url, or SQLite in the data dir.
func OpenIndex(ctx context.Context, cfg Config) (*index.DB, error) {
	if u := cfg.SharedDatabase(); u != "" {
		return index.OpenPostgres(ctx, u)
	}
	return index.OpenSQLite(ctx, filepath.Join(cfg.DataDir, "index.db"))
}

func (a *App) wire(ctx context.Context, keyPassword string) error {
	cfg := a.cfg
	tokens, err := service.NewTokens(a.db, a.rec)
	if err != nil {
		return err
	}
	ids, err := identity.New(cfg.OIDC.Issuers, cfg.OIDC.Rules, identity.Options{RefreshInterval: cfg.OIDC.RefreshInterval,
		Client: &http.Client{Timeout: 10 * time.Second, Transport: oci.DefaultTransport()}})
	if err != nil {
		return fmt.Errorf("oidc: %w", err)
	}
	tokens.WithIdentities(ids)
	tokenPath := filepath.Join(cfg.DataDir, AdminTokenFile)
	created, err := tokens.Bootstrap(ctx, tokenPath)
	if err != nil {
		return err
	}
	if created {
		a.log.InfoContext(ctx, "bootstrap admin token written", "path", tokenPath)
	}

	keySet, err := a.loadKeys(ctx, keyPassword)
	if err != nil {
		return err
	}
	lifecycle, err := service.NewKeyLifecycle(ctx, keySet, a.db, a.rec, a.log)
	if err != nil {
		return err
	}
	def, _, _ := keySet.Get("")
	a.keyID = def.ID()

	hosts, err := a.hosts(tokens.InternalCredential())
	if err != nil {
		return err
	}
	var kc authn.Keychain
	if cfg.DockerConfig != "" {
		if kc, err = oci.DockerConfigKeychain(cfg.DockerConfig); err != nil {
			return err
		}
	}
	regs, err := oci.NewRegistries(hosts, oci.Options{
		Keychain: kc, UserAgent: "attestd/" + Version,
		MaxManifestBytes: cfg.MaxManifestBytes, ReadBudgetBytes: cfg.RegistryReadBudget,
	})
	if err != nil {
		return err
	}

	a.regs = regs
	var regHandler http.Handler
	if cfg.EmbeddedRegistry.Enabled {
		if regHandler, err = registry.New(ctx, filepath.Join(cfg.DataDir, "registry")); err != nil {
			return err
		}
	}

	// Uploads are spooled here; leftovers of a crash are removed at start.
	tmpDir := filepath.Join(cfg.DataDir, "tmp")
	if err := os.RemoveAll(tmpDir); err != nil {
		return err
	}
	if err := os.MkdirAll(tmpDir, 0o700); err != nil {
		return err
	}

	policies, err := policy.NewSet()
	if err != nil {
		return err
	}
	var files [][]byte
	for _, f := range cfg.PolicyFiles {
		b, err := os.ReadFile(f) //nolint:gosec // the operator names policy files
		if err != nil {
			return fmt.Errorf("policy file: %w", err)
		}
		files = append(files, b)
	}
	policyService, err := service.NewPolicies(ctx, policies, files, a.db, a.rec)
	if err != nil {
		return err
	}
	// Shared state that any replica changes reaches this one through the
	// index's revisions.
	a.sync = service.NewSync(a.db, 250*time.Millisecond, a.log)
	a.sync.Watch(index.RevisionKeys, lifecycle.Reload)
	a.sync.Watch(index.RevisionPolicies, policyService.Reload)
	quarantines, err := service.NewQuarantines(ctx, a.db, a.rec, keySet, a.log)
	if err != nil {
		return err
	}
	a.sync.Watch(index.RevisionQuarantines, quarantines.Reload)
	// Verified tokens are cached briefly; a revocation on another replica
	// flushes them here.
	a.sync.Watch(index.RevisionTokens, tokens.Reload)
	evidence := service.NewEvidence(regs, keySet, service.WithKeyQuarantine(quarantines))
	verification := service.NewVerification(regs, evidence)
	// Writes of one subject are serialized in this process, and across
	// replicas through the shared index.
	var locks interface {
		Lock(ctx context.Context, key string) (func(), error)
	} = service.NewLocalLocks()
	if a.db.Shared() {
		locks = service.NewSharedLocks(a.db)
	}
	// A quarantined key signs nothing.
	signers := service.SignersNotQuarantined{Set: keySet, Quarantines: quarantines}
	attestations := service.NewAttestations(regs, regs, evidence, signers, locks, a.rec, cfg.BuilderID, a.log)
	gate := service.NewGate(regs, evidence, keySet, policies, a.rec, cfg.GateTimeout, cfg.VerdictTTL, a.log, service.WithQuarantine(quarantines))
	revalOpts := []service.RevalidatorOption{service.WithRefresh(a.sync.Check)}
	if cfg.RevalidateWebhookURL != "" {
		hook, err := notify.New(cfg.RevalidateWebhookURL, cfg.RevalidateWebhookAllow, "attestd/"+defaultOriginHost(cfg), notify.Options{})
		if err != nil {
			return fmt.Errorf("revalidate_webhook_url: %w", err)
		}
		revalOpts = append(revalOpts, service.WithNonCompliantNotify(nonCompliantWebhook(hook, a.log)))
	}
	revalidator := service.NewRevalidator(gate, a.db, cfg.RevalidateWindow, cfg.GateTimeout, a.log, revalOpts...)

	var newClient func(*river.Config) (service.JobClient, error)
	if u := cfg.SharedDatabase(); u != "" {
		driver, pool, err := jobs.OpenPostgres(ctx, u)
		if err != nil {
			return err
		}
		a.jobsDB, newClient = closer(pool.Close), service.RiverClient(driver)
	} else {
		driver, db, err := jobs.OpenSQLite(ctx, filepath.Join(cfg.DataDir, "jobs.db"))
		if err != nil {
			return err
		}
		// This process is the SQLite queue's one worker: what a crash left
		// running is retried now, not after river's rescue horizon.
		if n, err := jobs.RescueOrphans(ctx, driver); err != nil {
			_ = db.Close()
			return err
		} else if n > 0 {
			a.log.WarnContext(ctx, "jobs left running by a stopped process are retried", "jobs", n)
		}
		a.jobsDB, newClient = db, service.RiverClient(driver)
	}
	// VSAs of allows are signed by jobs on the one river client.
	vsas := service.NewVSAs(gate, evidence, attestations, keySet, policies, cfg.VSAMaxAge, cfg.BuilderID, a.log)
	// SQLite has one process per data dir: it wakes its own workers and
	// applies its own changes as it makes them, so its polls are
	// backstops and idle slowly (an idle server costs under 1% of a core).
	poll, syncEvery := time.Second, 250*time.Millisecond
	if a.db.Engine() == index.SQLite {
		poll, syncEvery = 5*time.Second, 2*time.Second
	}
	a.sync.SetInterval(syncEvery)
	sboms, err := service.NewSBOMs(newClient, regs, regs, attestations, a.db, service.SBOMLimits{
		MaxBytes: cfg.SBOMMaxBytes, MaxLayers: 500, Timeout: cfg.SBOMTimeout, Workers: cfg.SBOMWorkers, Poll: poll,
	}, true, a.log, revalidator.Jobs(cfg.RevalidateInterval), vsas.Jobs())
	if err != nil {
		return err
	}
	a.sboms = sboms
	vsas.UseQueue(sboms.Queue())
	gate.IssueVSAs(vsas)
	a.vsas = vsas

	// The auditor's view: reports, search, packages, replay.
	keyID := func(name string) (string, error) {
		k, _, err := keySet.Get(name)
		if err != nil {
			return "", err
		}
		return k.ID(), nil
	}
	reports, search := service.NewReports(regs, evidence, a.db, a.db), service.NewSearch(a.db, keyID)
	packages, replay := service.NewPackages(a.db, a.db, a.db), service.NewReplay(gate, a.db, cfg.GateTimeout)

	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics.MustRegister(nonCompliant{db: a.db, log: a.log})

	exports := service.NewExports(regs, regs, evidence, keySet, keySet, a.db, a.auditLogService())
	// The auditor's console is a client of the same read services.
	uiCfg := ui.Config{Log: a.log, Tokens: tokens, Reports: reports, Search: search, Packages: packages, Keys: lifecycle}
	if l := a.auditLogService(); l != nil {
		uiCfg.AuditLog = l
	}
	console, err := ui.New(uiCfg)
	if err != nil {
		return err
	}
	e := api.New(api.Config{
		Log:       a.log,
		Tokens:    tokens,
		Signing:   service.NewSigning(regs, regs, evidence, signers, locks, a.rec, a.log),
		Verify:    verification,
		Attest:    attestations,
		Gate:      gate,
		Admission: service.NewAdmission(gate, cfg.AdmissionDeadline, cfg.AdmissionUnknownKinds == "allow"),
		Policies:  policyService,
		Audit:     service.NewAudit(a.db),
		AuditLog:  a.auditLogService(),
		SBOMs:     sboms,
		Artifacts: service.NewArtifacts(regs, regs, tmpDir, archive.Limits{
			MaxBytes: cfg.MaxUploadBytes, MaxRatio: cfg.MaxDecompressionRatio, MaxEntries: 100_000,
		}, a.rec, a.log),
		MaxUploadBytes:    cfg.MaxUploadBytes,
		MaxPredicateBytes: cfg.MaxPredicateBytes,
		Reports:           reports,
		Exports:           exports,
		Search:            search,
		Packages:          packages,
		Replay:            replay,
		Quarantine:        quarantines,
		Deployments:       service.NewDeployments(a.db, keySet, quarantines),
		Revalidate:        revalidator,
		Keys:              lifecycle,
		UI:                console,
		Registry:          regHandler,
		RegistryHost:      a.regHost,
		Ready:             a.readyChecks(),
		Metrics:           metrics,
		MaxBodyBytes:      cfg.MaxBodyBytes,
		RequestTimeout:    cfg.RequestTimeout,
		UploadTimeout:     cfg.UploadTimeout,
	})
	a.srv = &http.Server{
		Handler:           e,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	if a.tlsLn != nil {
		a.tlsSrv = &http.Server{Handler: e, ReadHeaderTimeout: a.srv.ReadHeaderTimeout, IdleTimeout: a.srv.IdleTimeout, ErrorLog: a.srv.ErrorLog}
	}
	return nil
}

// loadKeys builds the key set. With no keys configured it is the generated
// local key "default". A KMS key whose KMS cannot be reached stops startup:
// attestd does not run with a key it cannot name.
func (a *App) loadKeys(ctx context.Context, keyPassword string) (*keys.Set, error) {
	cfgKeys := a.cfg.Keys
	if len(cfgKeys) == 0 {
		cfgKeys = []KeyConfig{{Name: "default", URI: "file://"}}
	}
	policy := keys.DefaultCallPolicy
	policy.Timeout = a.cfg.KMSTimeout
	var ks []*keys.Key
	for _, kc := range cfgKeys {
		var k *keys.Key
		var err error
		switch {
		case kc.URI == "file://":
			var pw []byte
			if pw, err = keys.Password(a.cfg.DataDir, keyPassword); err == nil {
				k, err = keys.EnsureFileKey(a.cfg.DataDir, pw)
			}
		case strings.HasPrefix(kc.URI, "file://"):
			if keyPassword == "" {
				return nil, fmt.Errorf("key %s: a key file needs ATTESTD_KEY_PASSWORD", kc.Name)
			}
			k, err = keys.LoadFileKey(kc.Name, strings.TrimPrefix(kc.URI, "file://"), []byte(keyPassword))
		default:
			k, err = keys.LoadKMS(ctx, kc.Name, kc.URI, policy)
			if errors.Is(err, keys.ErrUnavailable) {
				// The KMS is down: start from the public key cached in the
				// index, so that verification works; signing connects later.
				if cached, cerr := a.cachedKMSKey(ctx, kc, policy); cerr == nil {
					a.log.WarnContext(ctx, "KMS unreachable at start; using the cached public key until it answers", "key", kc.Name, "err", err.Error())
					k, err = cached, nil
				}
			}
		}
		if err != nil {
			return nil, err
		}
		ks = append(ks, k.Named(kc.Name).WithPolicy(policy).WithRepositories(kc.Repositories))
	}
	def := a.cfg.DefaultKey
	if def == "" {
		def = cfgKeys[0].Name
	}
	return keys.NewSet(def, ks...)
}

func (a *App) cachedKMSKey(ctx context.Context, kc KeyConfig, p keys.CallPolicy) (*keys.Key, error) {
	recs, err := a.db.Keys(ctx)
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		if r.Name == kc.Name {
			pub, err := cryptoutils.UnmarshalPEMToPublicKey([]byte(r.PublicPEM))
			if err != nil {
				return nil, err
			}
			return keys.CachedKMS(kc.Name, kc.URI, pub, p)
		}
	}
	return nil, fmt.Errorf("no cached public key for %s", kc.Name)
}

// closer adapts a Close without an error.
type closer func()

func (c closer) Close() error { c(); return nil }

// hosts lists the registries attestd may use: the embedded one (under its
// name and its loopback address, with the in-memory credential) and the
// configured external ones.
func (a *App) hosts(internal string) ([]oci.Host, error) {
	var hosts []oci.Host
	if a.cfg.EmbeddedRegistry.Enabled && a.ln != nil {
		_, port, err := net.SplitHostPort(a.ln.Addr().String())
		if err != nil {
			return nil, err
		}
		a.regHost = a.cfg.EmbeddedRegistry.Host
		if a.regHost == "" {
			a.regHost = "localhost:" + port
		}
		auth := &authn.Basic{Username: "attestd", Password: internal}
		hosts = append(hosts, oci.Host{Name: a.regHost, Auth: auth, NoReferrersAPI: true})
		if alias := "127.0.0.1:" + port; alias != a.regHost {
			hosts = append(hosts, oci.Host{Name: alias, Auth: auth, NoReferrersAPI: true})
		}
	}
	ext, err := externalHosts(a.cfg)
	if err != nil {
		return nil, err
	}
	return append(hosts, ext...), nil
}

// externalHosts are the configured external registries, with their
// credentials from the environment.
func externalHosts(cfg Config) ([]oci.Host, error) {
	var hosts []oci.Host
	for _, r := range cfg.Registries {
		h := oci.Host{Name: r.Host, Insecure: r.Insecure, TokenRealms: r.TokenRealms}
		switch {
		case r.TokenEnv != "":
			tok := os.Getenv(r.TokenEnv)
			if tok == "" {
				return nil, fmt.Errorf("registry %s: environment variable %s is empty", r.Host, r.TokenEnv)
			}
			h.Auth = &authn.Bearer{Token: tok}
		case r.Username != "":
			pw := os.Getenv(r.PasswordEnv)
			if pw == "" {
				return nil, fmt.Errorf("registry %s: environment variable %q (password_env) is empty", r.Host, r.PasswordEnv)
			}
			h.Auth = &authn.Basic{Username: r.Username, Password: pw}
		}
		hosts = append(hosts, h)
	}
	return hosts, nil
}

// auditLogService is the audit log's read side for the API, nil without a log.
func (a *App) auditLogService() *service.AuditLog {
	if a.alog == nil {
		return nil
	}
	return service.NewAuditLog(a.alog, a.alog, a.logKey.Verifier, a.cfg.LogPublic)
}

func (a *App) readyChecks() []api.Check {
	checks := []api.Check{
		{Name: "index", Fn: a.db.Ping},
		{Name: "key", Fn: func(context.Context) error {
			if a.keyID == "" {
				return errors.New("no signing key")
			}
			return nil
		}},
	}
	if a.alog != nil {
		checks = append(checks, api.Check{Name: "audit_log", Fn: func(ctx context.Context) error {
			_, err := a.alog.Size(ctx)
			return err
		}})
	}
	if a.cfg.EmbeddedRegistry.Enabled && a.ln != nil {
		url := "http://" + a.ln.Addr().String() + "/v2/"
		checks = append(checks, api.Check{Name: "registry", Fn: func(ctx context.Context) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusOK {
				return fmt.Errorf("registry answered %d", resp.StatusCode)
			}
			return nil
		}})
	}
	return checks
}

// RegistryHost is the embedded registry's name in image references.
func (a *App) RegistryHost() string { return a.regHost }

// KeyID is the id of the active signing key.
func (a *App) KeyID() string { return a.keyID }

// LogVerifierKey is the audit log's verifier key (GET /v1/log/key), "" without a log.
func (a *App) LogVerifierKey() string { return a.logKey.Verifier }

// URL is the base URL of the API.
func (a *App) URL() string {
	if a.ln == nil {
		return ""
	}
	addr := a.ln.Addr().String()
	if strings.HasPrefix(addr, "[::]") || strings.HasPrefix(addr, "0.0.0.0") {
		_, port, _ := net.SplitHostPort(addr)
		addr = "127.0.0.1:" + port
	}
	return "http://" + addr
}

// TLSURL is the base URL of the HTTPS listener, or "" without one.
func (a *App) TLSURL() string {
	if a.tlsLn == nil {
		return ""
	}
	return "https://" + a.tlsLn.Addr().String()
}

// Serve serves until ctx is done, then shuts down gracefully: in-flight
// requests finish within the shutdown timeout.
func (a *App) Serve(ctx context.Context) error {
	if a.cfg.JobsDatabaseURL != "" && a.cfg.DatabaseURL == "" {
		a.log.WarnContext(ctx, "jobs_database_url is deprecated: set database_url (ATTESTD_DATABASE_URL); it now holds the index too")
	}
	syncCtx, stopSync := context.WithCancel(context.WithoutCancel(ctx))
	syncDone := make(chan struct{})
	go func() { a.sync.Run(syncCtx); close(syncDone) }()
	outboxDone := make(chan struct{})
	if a.outbox != nil {
		go func() { a.outbox.Run(syncCtx); close(outboxDone) }()
	} else {
		close(outboxDone)
	}
	// Workers stop through Stop below, after the HTTP server: not when ctx ends.
	if err := a.sboms.Start(context.WithoutCancel(ctx)); err != nil {
		stopSync()
		<-syncDone
		<-outboxDone
		return fmt.Errorf("start SBOM workers: %w", err)
	}
	a.vsas.Start(context.WithoutCancel(ctx))
	var err error
	if a.ln == nil { // attestd worker: jobs only
		a.log.InfoContext(ctx, "attestd worker running", "version", Version)
		<-ctx.Done()
	} else {
		errc := make(chan error, 2)
		go func() { errc <- a.srv.Serve(a.ln) }()
		if a.tlsSrv != nil {
			go func() { errc <- a.tlsSrv.Serve(a.tlsLn) }()
		}
		a.log.InfoContext(ctx, "attestd serving", "url", a.URL(), "tls_url", a.TLSURL(), "registry", a.regHost, "key_id", a.keyID, "index", string(a.db.Engine()), "version", Version)
		select {
		case err = <-errc:
		case <-ctx.Done():
		}
		a.log.InfoContext(ctx, "shutting down")
		a.regs.CloseIdleConnections()
	}
	sctx, cancel := context.WithTimeout(context.Background(), a.shutdown)
	defer cancel()
	if a.tlsSrv != nil {
		if terr := a.tlsSrv.Shutdown(sctx); err == nil {
			err = terr
		}
	}
	if a.ln != nil && err == nil {
		err = a.srv.Shutdown(sctx)
	}
	if serr := a.sboms.Stop(sctx); err == nil && serr != nil && !errors.Is(serr, context.Canceled) {
		err = serr
	}
	a.vsas.Stop()
	stopSync()
	<-syncDone
	<-outboxDone
	// In-flight requests have answered: what they recorded is written; the
	// recorder then flushes the reuse counts.
	if rerr := a.rec.Close(sctx); err == nil {
		err = rerr
	}
	// The log publishes a checkpoint covering what this process appended.
	if a.alog != nil {
		if lerr := a.alog.Close(sctx); err == nil {
			err = lerr
		}
	}
	_ = a.jobsDB.Close()
	if cerr := a.db.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// nonCompliant is the gauge of deployments the latest re-validation found
// non-compliant, by namespace. It is read from the index at each scrape,
// so every replica reports the same, whichever ran the job.
type nonCompliant struct {
	db  *index.DB
	log *slog.Logger
}

var nonCompliantDesc = prometheus.NewDesc("attestd_deployments_noncompliant",
	"Admitted images (repository, digest, namespace) the latest re-validation would deny now, by namespace.", []string{"namespace"}, nil)

func (nonCompliant) Describe(ch chan<- *prometheus.Desc) { ch <- nonCompliantDesc }

func (n nonCompliant) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	counts, err := n.db.NonCompliantByNamespace(ctx)
	if err != nil {
		n.log.WarnContext(ctx, "non-compliant deployments not counted", "err", err.Error())
		ch <- prometheus.NewInvalidMetric(nonCompliantDesc, err)
		return
	}
	for ns, c := range counts {
		ch <- prometheus.MustNewConstMetric(nonCompliantDesc, prometheus.GaugeValue, float64(c), ns)
	}
}

// Bounds of the re-validation webhook: events per run, and the time one
// run's deliveries may take (the gate never waits on them: they run in the
// re-validation job).
const (
	maxWebhookEvents = 100
	webhookBudget    = time.Minute
)

// nonCompliantWebhook posts a CloudEvent (dev.attestd.deployment.noncompliant)
// for each deployment that turned non-compliant. A delivery that fails
// after its retries is logged, by host only, and dropped.
func nonCompliantWebhook(hook *notify.Webhook, log *slog.Logger) func(context.Context, []index.Revalidation) {
	return func(ctx context.Context, rs []index.Revalidation) {
		ctx, cancel := context.WithTimeout(ctx, webhookBudget)
		defer cancel()
		for i, r := range rs {
			if i == maxWebhookEvents {
				log.WarnContext(ctx, "re-validation webhook: more deployments turned non-compliant than one run sends", "sent", i, "turned", len(rs))
				return
			}
			data := map[string]any{"repository": r.Repository, "digest": r.Digest, "namespace": r.Namespace, "compliant": false,
				"reason": r.Reason, "checked_at": r.CheckedAt}
			if err := hook.Send(ctx, "dev.attestd.deployment.noncompliant", r.Repository+"@"+r.Digest, data); err != nil {
				log.WarnContext(ctx, "re-validation webhook not delivered", "host", hook.Host(), "digest", r.Digest, "err", err.Error())
			}
		}
	}
}
