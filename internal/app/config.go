package app

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/attestd/attestd/internal/notify"
	"github.com/attestd/attestd/service/identity"
	"github.com/attestd/attestd/storage/auditlog"
)

// Config is every setting of `attestd serve`. Secrets are never settings:
// the key password comes from ATTESTD_KEY_PASSWORD or a 0600 file, registry
// passwords from the environment variables the config names.
type Config struct {
	// Listen is the address of the HTTP listener (API and embedded registry).
	Listen string `yaml:"listen"`
	// DataDir holds the index, the key, the admin token and registry blobs.
	DataDir string `yaml:"data_dir"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level"`
	// MaxBodyBytes caps JSON request bodies.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxManifestBytes caps every manifest read from a registry.
	MaxManifestBytes int64 `yaml:"max_manifest_bytes"`
	// RegistryReadBudget caps the bytes of registry responses (manifests,
	// referrer lists, blobs) read into memory at once, over all requests.
	RegistryReadBudget int64 `yaml:"registry_read_budget"`
	// ShutdownTimeout bounds graceful shutdown.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// EmbeddedRegistry configures the registry served under /v2/.
	EmbeddedRegistry EmbeddedRegistry `yaml:"embedded_registry"`
	// Registries are the external registries attestd may talk to.
	Registries []Registry `yaml:"registries"`
	// DockerConfig is a docker config.json whose credentials are used for
	// external registries without their own.
	DockerConfig string `yaml:"docker_config"`
	// Keys are the signing keys; none means the generated local key "default".
	Keys []KeyConfig `yaml:"keys"`
	// DefaultKey names the key used when a request names none.
	DefaultKey string `yaml:"default_key"`
	// KMSTimeout is the deadline of one KMS call; failed calls are tried 3 times.
	KMSTimeout time.Duration `yaml:"kms_timeout"`
	// MaxPredicateBytes caps an attestation's predicate.
	MaxPredicateBytes int64 `yaml:"max_predicate_bytes"`
	// MaxUploadBytes caps an artifact upload, as sent, as decompressed and
	// as extracted (an archive's entries, summed).
	MaxUploadBytes int64 `yaml:"max_upload_bytes"`
	// MaxDecompressionRatio caps how far a gzipped upload may expand.
	MaxDecompressionRatio int64 `yaml:"max_decompression_ratio"`
	// BuilderID is the SLSA builder id of the provenance attestd writes.
	BuilderID string `yaml:"builder_id"`
	// PolicyFiles are gate policy documents loaded at start.
	PolicyFiles []string `yaml:"policy_files"`
	// GateTimeout bounds one gate decision; past it the decision is deny.
	GateTimeout time.Duration `yaml:"gate_timeout"`
	// AdmissionDeadline bounds one admission review; keep it under the
	// webhook's timeoutSeconds so that slowness is a deny, not a timeout.
	AdmissionDeadline time.Duration `yaml:"admission_deadline"`
	// AdmissionUnknownKinds says what admission does with kinds attestd
	// does not check: "deny" (the default) or "allow".
	AdmissionUnknownKinds string `yaml:"admission_unknown_kinds"`
	// RequestTimeout bounds every API request but uploads, registry calls
	// included; past it the answer is 503.
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// UploadTimeout bounds one artifact upload.
	UploadTimeout time.Duration `yaml:"upload_timeout"`
	// DatabaseURL is a PostgreSQL URL for the index and the job queue,
	// shared by replicas and workers; empty means SQLite in the data dir.
	// Give it through ATTESTD_DATABASE_URL to keep its password out of files.
	DatabaseURL string `yaml:"database_url"`
	// JobsDatabaseURL is the deprecated name of DatabaseURL (one release).
	JobsDatabaseURL string `yaml:"jobs_database_url"`
	// SBOMWorkers caps concurrent cataloging jobs in this process.
	SBOMWorkers int `yaml:"sbom_workers"`
	// SBOMMaxBytes caps an image's compressed layers for cataloging.
	SBOMMaxBytes int64 `yaml:"sbom_max_bytes"`
	// SBOMTimeout caps one cataloging attempt.
	SBOMTimeout time.Duration `yaml:"sbom_timeout"`
	// OIDC accepts CI workload identities: pinned issuers, and rules that
	// grant their verified claims roles on repositories and keys (YAML only).
	OIDC OIDCConfig `yaml:"oidc"`
	// VerdictTTL is how long a verdict is reused for the same digest,
	// policy revision and key-set revision.
	VerdictTTL time.Duration `yaml:"verdict_ttl"`
	// RevalidateWindow is how far back admissions are judged again by the
	// periodic re-validation; RevalidateInterval how often it runs.
	RevalidateWindow   time.Duration `yaml:"revalidate_window"`
	RevalidateInterval time.Duration `yaml:"revalidate_interval"`
	// RevalidateWebhookURL, if set, receives a CloudEvent for each
	// deployment a re-validation finds newly non-compliant. Its host MUST
	// be in RevalidateWebhookAllow.
	RevalidateWebhookURL   string   `yaml:"revalidate_webhook_url"`
	RevalidateWebhookAllow []string `yaml:"revalidate_webhook_allow"`
	// VSAMaxAge is how long a VSA attestd signs is reused: past half of it
	// the next allow signs a new one.
	VSAMaxAge time.Duration `yaml:"vsa_max_age"`
	// LogDir is the directory of the POSIX audit log; empty means "log" in
	// the data dir.
	LogDir string `yaml:"log_dir"`
	// LogDatabaseURL is a MySQL or MariaDB URL (mysql://user:pw@host:port/db)
	// of the audit log every replica appends to; it replaces LogDir. Give
	// it through ATTESTD_LOG_DATABASE_URL to keep its password out of files.
	LogDatabaseURL string `yaml:"log_database_url"`
	// LogKeyFile is the Ed25519 note key checkpoints are signed with;
	// empty means log.key in the data dir, generated on first start.
	// Replicas MUST share one.
	LogKeyFile string `yaml:"log_key_file"`
	// LogOrigin names the log: the first line of its checkpoints. Empty
	// means the key's origin, or for a new key attestd/<registry host or
	// hostname>.
	LogOrigin string `yaml:"log_origin"`
	// LogPublic serves /log/ and the proofs to anonymous readers.
	LogPublic bool `yaml:"log_public"`
	// TLSListen, when set, serves the same API over HTTPS there (the
	// admission webhooks need it) with TLSCertFile and TLSKeyFile; the
	// files are read again when they change, so a rotated certificate
	// (cert-manager) is served without a restart.
	TLSListen   string `yaml:"tls_listen"`
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// UnsafeNoAuditLog runs without the audit log: writes are acknowledged
	// once in the index only. For benchmarks that measure what the log
	// costs; it has no flag, variable or YAML key and MUST NOT be set in a
	// deployment.
	UnsafeNoAuditLog bool `yaml:"-"`
	// LogOutboxGrace is how old an event without a log index must be
	// before the outbox appends it (default 15 s: older than any record
	// still under way on a replica). Tests shorten it; no flag.
	LogOutboxGrace time.Duration `yaml:"-"`
}

// KeyConfig is one signing key.
type KeyConfig struct {
	// Name is how requests and policies refer to the key.
	Name string `yaml:"name"`
	// URI is file:// (the generated local key), file:///path/cosign.key, or
	// a KMS reference: awskms://, gcpkms://, azurekms://, hashivault://.
	URI string `yaml:"uri"`
	// Repositories limits the key to matching repositories ("host/path"
	// globs; "host/team/**" for a whole subtree). Empty: any repository.
	Repositories []string `yaml:"repositories"`
}

// OIDCConfig configures CI workload identities.
type OIDCConfig struct {
	Issuers []identity.Issuer `yaml:"issuers"`
	Rules   []identity.Rule   `yaml:"rules"`
	// RefreshInterval is the least time between two JWKS fetches of one
	// issuer (default 1m).
	RefreshInterval time.Duration `yaml:"refresh_interval"`
}

// EmbeddedRegistry configures the embedded registry.
type EmbeddedRegistry struct {
	// Enabled serves the registry under /v2/.
	Enabled bool `yaml:"enabled"`
	// Host is the registry name used in image references; default localhost:<port>.
	Host string `yaml:"host"`
}

// Registry is one external registry.
type Registry struct {
	// Host is host[:port] as written in image references.
	Host string `yaml:"host"`
	// Insecure uses plain http (loopback hosts always do).
	Insecure bool `yaml:"insecure"`
	// Username for basic auth; the password comes from PasswordEnv.
	Username string `yaml:"username"`
	// PasswordEnv names the environment variable holding the basic-auth password.
	PasswordEnv string `yaml:"password_env"`
	// TokenEnv names the environment variable holding a bearer (registry) token.
	TokenEnv string `yaml:"token_env"`
	// TokenRealms are the hosts (host[:port]) of the registry's token
	// service where it is not the registry itself. The registry's
	// credentials go to no other host, whatever its challenge names.
	TokenRealms []string `yaml:"token_realms"`
}

// Defaults is the zero-config configuration.
func Defaults() Config {
	return Config{
		Listen:                "127.0.0.1:8080",
		DataDir:               "attestd-data",
		LogLevel:              "info",
		MaxBodyBytes:          1 << 20,
		MaxManifestBytes:      4 << 20,
		RegistryReadBudget:    256 << 20,
		ShutdownTimeout:       20 * time.Second,
		EmbeddedRegistry:      EmbeddedRegistry{Enabled: true},
		KMSTimeout:            5 * time.Second,
		MaxPredicateBytes:     32 << 20,
		MaxUploadBytes:        4 << 30,
		MaxDecompressionRatio: 50,
		BuilderID:             "https://attestd.dev/builder/v1",
		GateTimeout:           5 * time.Second,
		AdmissionDeadline:     8 * time.Second,
		AdmissionUnknownKinds: "deny",
		RequestTimeout:        time.Minute,
		UploadTimeout:         time.Hour,
		VerdictTTL:            time.Minute,
		RevalidateWindow:      168 * time.Hour,
		RevalidateInterval:    10 * time.Minute,
		VSAMaxAge:             24 * time.Hour,
		SBOMWorkers:           2,
		SBOMMaxBytes:          8 << 30,
		SBOMTimeout:           15 * time.Minute,
		LogOutboxGrace:        15 * time.Second,
	}
}

// Setting is one setting: its flag, environment variable and YAML key, its
// help, and how it is read from and written to a Config. Every setting is
// declared once, here; --help, the flags, the environment and the README
// table all come from this list.
type Setting struct {
	Flag, Env, YAML, Help string

	set func(c *Config, v string) error
	get func(c *Config) string
}

// Settings lists every setting with its flag, environment variable and YAML key.
var Settings = []Setting{
	{Flag: "config", Env: "ATTESTD_CONFIG", YAML: "", Help: "YAML config file; env and flags override it"},
	str("listen", "ATTESTD_LISTEN", "listen", "address of the HTTP listener (API and embedded registry)", func(c *Config) *string { return &c.Listen }),
	str("data-dir", "ATTESTD_DATA_DIR", "data_dir", "data directory: index, key, admin token, registry blobs", func(c *Config) *string { return &c.DataDir }),
	str("log-level", "ATTESTD_LOG_LEVEL", "log_level", "debug, info, warn or error", func(c *Config) *string { return &c.LogLevel }),
	i64("max-body-bytes", "ATTESTD_MAX_BODY_BYTES", "max_body_bytes", "cap on JSON request bodies (413 above it)", func(c *Config) *int64 { return &c.MaxBodyBytes }),
	i64("max-manifest-bytes", "ATTESTD_MAX_MANIFEST_BYTES", "max_manifest_bytes", "cap on each manifest read from a registry", func(c *Config) *int64 { return &c.MaxManifestBytes }),
	i64("registry-read-budget", "ATTESTD_REGISTRY_READ_BUDGET", "registry_read_budget", "cap on the bytes of registry responses read into memory at once, over all requests (default 256 MiB)", func(c *Config) *int64 { return &c.RegistryReadBudget }),
	dur("shutdown-timeout", "ATTESTD_SHUTDOWN_TIMEOUT", "shutdown_timeout", "bound on graceful shutdown", func(c *Config) *time.Duration { return &c.ShutdownTimeout }),
	boolean("embedded-registry", "ATTESTD_EMBEDDED_REGISTRY", "embedded_registry.enabled", "serve the embedded OCI registry under /v2/", func(c *Config) *bool { return &c.EmbeddedRegistry.Enabled }),
	str("registry-host", "ATTESTD_REGISTRY_HOST", "embedded_registry.host", "name of the embedded registry in image references (default localhost:<port>)", func(c *Config) *string { return &c.EmbeddedRegistry.Host }),
	registriesSetting("registries", "ATTESTD_REGISTRIES", "registries[].host", "comma-separated external registry hosts attestd may use (YAML adds credentials and insecure)"),
	str("docker-config", "ATTESTD_DOCKER_CONFIG", "docker_config", "docker config.json with registry credentials", func(c *Config) *string { return &c.DockerConfig }),
	keysSetting("keys", "ATTESTD_KEYS", "keys[].name, keys[].uri", "signing keys as name=uri, comma-separated (file://, awskms://, gcpkms://, azurekms://, hashivault://)"),
	str("default-key", "ATTESTD_DEFAULT_KEY", "default_key", "key used when a request names none (default: the first key)", func(c *Config) *string { return &c.DefaultKey }),
	dur("kms-timeout", "ATTESTD_KMS_TIMEOUT", "kms_timeout", "deadline of one KMS call; each call is tried 3 times with backoff", func(c *Config) *time.Duration { return &c.KMSTimeout }),
	i64("max-predicate-bytes", "ATTESTD_MAX_PREDICATE_BYTES", "max_predicate_bytes", "cap on an attestation's predicate (413 above it; default 32 MiB)", func(c *Config) *int64 { return &c.MaxPredicateBytes }),
	str("builder-id", "ATTESTD_BUILDER_ID", "builder_id", "SLSA builder id written into the provenance attestd generates", func(c *Config) *string { return &c.BuilderID }),
	list("policy-files", "ATTESTD_POLICY_FILES", "policy_files", "gate policy files, comma-separated, loaded at start", func(c *Config) *[]string { return &c.PolicyFiles }),
	dur("gate-timeout", "ATTESTD_GATE_TIMEOUT", "gate_timeout", "bound on one gate decision; past it: deny", func(c *Config) *time.Duration { return &c.GateTimeout }),
	dur("admission-deadline", "ATTESTD_ADMISSION_DEADLINE", "admission_deadline", "bound on one admission review, under the webhook timeout", func(c *Config) *time.Duration { return &c.AdmissionDeadline }),
	str("admission-unknown-kinds", "ATTESTD_ADMISSION_UNKNOWN_KINDS", "admission_unknown_kinds", "deny (default) or allow objects of kinds attestd does not check", func(c *Config) *string { return &c.AdmissionUnknownKinds }),
	dur("request-timeout", "ATTESTD_REQUEST_TIMEOUT", "request_timeout", "bound on every API request but uploads, registry calls included (503 past it; default 1m)", func(c *Config) *time.Duration { return &c.RequestTimeout }),
	dur("upload-timeout", "ATTESTD_UPLOAD_TIMEOUT", "upload_timeout", "bound on one artifact upload (default 1h)", func(c *Config) *time.Duration { return &c.UploadTimeout }),
	dur("vsa-max-age", "ATTESTD_VSA_MAX_AGE", "vsa_max_age", "how long a signed VSA of an allow is reused; past half of it the next allow signs a new one (default 24h)", func(c *Config) *time.Duration { return &c.VSAMaxAge }),
	dur("verdict-ttl", "ATTESTD_VERDICT_TTL", "verdict_ttl", "how long a verdict is reused (same digest, policy and key-set revisions)", func(c *Config) *time.Duration { return &c.VerdictTTL }),
	dur("revalidate-window", "ATTESTD_REVALIDATE_WINDOW", "revalidate_window", "how far back admissions are judged again by the periodic re-validation (default 168h)", func(c *Config) *time.Duration { return &c.RevalidateWindow }),
	dur("revalidate-interval", "ATTESTD_REVALIDATE_INTERVAL", "revalidate_interval", "how often the re-validation runs (default 10m)", func(c *Config) *time.Duration { return &c.RevalidateInterval }),
	str("revalidate-webhook-url", "ATTESTD_REVALIDATE_WEBHOOK_URL", "revalidate_webhook_url", "URL that gets a CloudEvents JSON POST for each deployment a re-validation finds newly non-compliant (default: none)", func(c *Config) *string { return &c.RevalidateWebhookURL }),
	list("revalidate-webhook-allow", "ATTESTD_REVALIDATE_WEBHOOK_ALLOW", "revalidate_webhook_allow", "hosts (host[:port]) the re-validation webhook may be, comma-separated", func(c *Config) *[]string { return &c.RevalidateWebhookAllow }),
	str("database-url", "ATTESTD_DATABASE_URL", "database_url", "PostgreSQL URL of the index and the job queue, shared by replicas (default: SQLite in the data dir); needs external registries", func(c *Config) *string { return &c.DatabaseURL }),
	str("jobs-database-url", "ATTESTD_JOBS_DATABASE_URL", "jobs_database_url", "deprecated name of --database-url", func(c *Config) *string { return &c.JobsDatabaseURL }),
	integer("sbom-workers", "ATTESTD_SBOM_WORKERS", "sbom_workers", "concurrent SBOM jobs in this process", func(c *Config) *int { return &c.SBOMWorkers }),
	i64("sbom-max-bytes", "ATTESTD_SBOM_MAX_BYTES", "sbom_max_bytes", "cap on an image's compressed layers for cataloging (default 8 GiB)", func(c *Config) *int64 { return &c.SBOMMaxBytes }),
	dur("sbom-timeout", "ATTESTD_SBOM_TIMEOUT", "sbom_timeout", "cap on one cataloging attempt (default 15m)", func(c *Config) *time.Duration { return &c.SBOMTimeout }),
	i64("max-upload-bytes", "ATTESTD_MAX_UPLOAD_BYTES", "max_upload_bytes", "cap on an artifact upload, as sent and decompressed (413 above it; default 4 GiB)", func(c *Config) *int64 { return &c.MaxUploadBytes }),
	i64("max-decompression-ratio", "ATTESTD_MAX_DECOMPRESSION_RATIO", "max_decompression_ratio", "cap on how far a gzipped upload may expand (default 50:1)", func(c *Config) *int64 { return &c.MaxDecompressionRatio }),
	{Flag: "", Env: "", YAML: "oidc.issuers[], oidc.rules[]", Help: "CI workload identities (OIDC ID tokens): pinned issuers and the rules that grant them (YAML only)"},
	str("log-dir", "ATTESTD_LOG_DIR", "log_dir", "directory of the POSIX audit log (default: log in the data dir)", func(c *Config) *string { return &c.LogDir }),
	str("log-database-url", "ATTESTD_LOG_DATABASE_URL", "log_database_url", "MySQL/MariaDB URL (mysql://user:pw@host:port/db) of the audit log replicas share; needs log_key_file", func(c *Config) *string { return &c.LogDatabaseURL }),
	str("log-key-file", "ATTESTD_LOG_KEY_FILE", "log_key_file", "Ed25519 note key checkpoints are signed with (default: log.key in the data dir, generated 0600); replicas share one", func(c *Config) *string { return &c.LogKeyFile }),
	str("log-origin", "ATTESTD_LOG_ORIGIN", "log_origin", "origin line of the log's checkpoints (default: the key's, or attestd/<registry host or hostname>)", func(c *Config) *string { return &c.LogOrigin }),
	boolean("log-public", "ATTESTD_LOG_PUBLIC", "log_public", "serve /log/ and the log proofs to anonymous readers (default false: auditor token)", func(c *Config) *bool { return &c.LogPublic }),
	str("tls-listen", "ATTESTD_TLS_LISTEN", "tls_listen", "address of an HTTPS listener serving the same API (the admission webhooks need TLS); with tls_cert_file and tls_key_file", func(c *Config) *string { return &c.TLSListen }),
	str("tls-cert-file", "ATTESTD_TLS_CERT_FILE", "tls_cert_file", "PEM certificate chain to serve HTTPS with (read again when it changes); with tls_key_file", func(c *Config) *string { return &c.TLSCertFile }),
	str("tls-key-file", "ATTESTD_TLS_KEY_FILE", "tls_key_file", "PEM private key of tls_cert_file", func(c *Config) *string { return &c.TLSKeyFile }),
	{Flag: "", Env: "ATTESTD_KEY_PASSWORD", YAML: "", Help: "password of the local key; default: a generated 0600 file in the data dir"},
}

func str(flag, env, yaml, help string, f func(*Config) *string) Setting {
	return Setting{Flag: flag, Env: env, YAML: yaml, Help: help,
		set: func(c *Config, v string) error { *f(c) = v; return nil },
		get: func(c *Config) string { return *f(c) }}
}

func i64(flag, env, yaml, help string, f func(*Config) *int64) Setting {
	return Setting{Flag: flag, Env: env, YAML: yaml, Help: help,
		set: func(c *Config, v string) (err error) { *f(c), err = strconv.ParseInt(v, 10, 64); return err },
		get: func(c *Config) string { return strconv.FormatInt(*f(c), 10) }}
}

func integer(flag, env, yaml, help string, f func(*Config) *int) Setting {
	return Setting{Flag: flag, Env: env, YAML: yaml, Help: help,
		set: func(c *Config, v string) (err error) { *f(c), err = strconv.Atoi(v); return err },
		get: func(c *Config) string { return strconv.Itoa(*f(c)) }}
}

func dur(flag, env, yaml, help string, f func(*Config) *time.Duration) Setting {
	return Setting{Flag: flag, Env: env, YAML: yaml, Help: help,
		set: func(c *Config, v string) (err error) { *f(c), err = time.ParseDuration(v); return err },
		get: func(c *Config) string { return f(c).String() }}
}

func boolean(flag, env, yaml, help string, f func(*Config) *bool) Setting {
	return Setting{Flag: flag, Env: env, YAML: yaml, Help: help,
		set: func(c *Config, v string) (err error) { *f(c), err = strconv.ParseBool(v); return err },
		get: func(c *Config) string { return strconv.FormatBool(*f(c)) }}
}

// list appends comma-separated values.
func list(flag, env, yaml, help string, f func(*Config) *[]string) Setting {
	return Setting{Flag: flag, Env: env, YAML: yaml, Help: help,
		set: func(c *Config, v string) error {
			for _, x := range strings.Split(v, ",") {
				if x = strings.TrimSpace(x); x != "" {
					*f(c) = append(*f(c), x)
				}
			}
			return nil
		},
		get: func(c *Config) string { return strings.Join(*f(c), ",") }}
}

// registriesSetting adds comma-separated hosts not configured yet.
func registriesSetting(flag, env, yaml, help string) Setting {
	return Setting{Flag: flag, Env: env, YAML: yaml, Help: help,
		set: func(c *Config, v string) error {
			for _, h := range strings.Split(v, ",") {
				if h = strings.TrimSpace(h); h != "" && !c.hasRegistry(h) {
					c.Registries = append(c.Registries, Registry{Host: h})
				}
			}
			return nil
		},
		get: func(c *Config) string {
			hs := make([]string, 0, len(c.Registries))
			for _, r := range c.Registries {
				hs = append(hs, r.Host)
			}
			return strings.Join(hs, ",")
		}}
}

// keysSetting adds comma-separated name=uri keys.
func keysSetting(flag, env, yaml, help string) Setting {
	return Setting{Flag: flag, Env: env, YAML: yaml, Help: help,
		set: func(c *Config, v string) error {
			for _, kv := range strings.Split(v, ",") {
				if strings.TrimSpace(kv) == "" {
					continue
				}
				n, uri, ok := strings.Cut(strings.TrimSpace(kv), "=")
				if !ok || n == "" || uri == "" {
					return fmt.Errorf("%q: want name=uri", kv)
				}
				c.Keys = append(c.Keys, KeyConfig{Name: n, URI: uri})
			}
			return nil
		},
		get: func(c *Config) string {
			ks := make([]string, 0, len(c.Keys))
			for _, k := range c.Keys {
				ks = append(ks, k.Name+"="+k.URI)
			}
			return strings.Join(ks, ",")
		}}
}

// setting returns the setting of flag.
func setting(flag string) (Setting, bool) {
	for _, s := range Settings {
		if s.Flag == flag && s.set != nil {
			return s, true
		}
	}
	return Setting{}, false
}

// Get returns one setting of c by its flag name, as a flag value.
func (c *Config) Get(flag string) string {
	s, ok := setting(flag)
	if !ok {
		return ""
	}
	return s.get(c)
}

// LoadFile reads a YAML config over c. Unknown keys are an error.
func (c *Config) LoadFile(path string) error {
	f, err := os.Open(path) //nolint:gosec // the operator names the config file
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(io.LimitReader(f, 1<<20))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	return nil
}

// Set applies one setting by its flag name, from a flag or environment value.
func (c *Config) Set(flag, v string) error {
	st, ok := setting(flag)
	if !ok {
		return fmt.Errorf("unknown setting %q", flag)
	}
	if err := st.set(c, v); err != nil {
		return fmt.Errorf("setting %s: %w", flag, err)
	}
	return nil
}

func (c *Config) hasRegistry(h string) bool {
	for _, r := range c.Registries {
		if strings.EqualFold(r.Host, h) {
			return true
		}
	}
	return false
}

// ApplyEnv applies every ATTESTD_* setting found in the environment.
func (c *Config) ApplyEnv(getenv func(string) string) error {
	for _, s := range Settings {
		if s.Flag == "" || s.Flag == "config" {
			continue
		}
		if v := getenv(s.Env); v != "" {
			if err := c.Set(s.Flag, v); err != nil {
				return fmt.Errorf("%s: %w", s.Env, err)
			}
		}
	}
	return nil
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen %q: %w", c.Listen, err))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir is empty"))
	}
	if c.MaxBodyBytes <= 0 || c.MaxManifestBytes <= 0 || c.MaxPredicateBytes <= 0 || c.MaxUploadBytes <= 0 || c.MaxDecompressionRatio <= 0 {
		errs = append(errs, errors.New("size limits must be positive"))
	}
	if c.RegistryReadBudget < c.MaxManifestBytes {
		errs = append(errs, fmt.Errorf("registry_read_budget (%d) must be at least max_manifest_bytes (%d)", c.RegistryReadBudget, c.MaxManifestBytes))
	}
	if (c.TLSListen != "") != (c.TLSCertFile != "") || (c.TLSListen != "") != (c.TLSKeyFile != "") {
		errs = append(errs, errors.New("tls_listen, tls_cert_file and tls_key_file go together"))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log_level %q: want debug, info, warn or error", c.LogLevel))
	}
	for _, r := range c.Registries {
		if r.Host == "" || strings.ContainsAny(r.Host, "/@ ") {
			errs = append(errs, fmt.Errorf("registry host %q: want host[:port]", r.Host))
		}
		if r.PasswordEnv != "" && r.TokenEnv != "" {
			errs = append(errs, fmt.Errorf("registry %s: set password_env or token_env, not both", r.Host))
		}
		for _, realm := range r.TokenRealms {
			if realm == "" || strings.ContainsAny(realm, "/@ ?#") {
				errs = append(errs, fmt.Errorf("registry %s: token realm %q: want host[:port], without scheme or path", r.Host, realm))
			}
		}
	}
	names := map[string]bool{}
	for _, k := range c.Keys {
		switch {
		case k.Name == "" || strings.ContainsAny(k.Name, " /,="):
			errs = append(errs, fmt.Errorf("key name %q: want a plain name", k.Name))
		case names[k.Name]:
			errs = append(errs, fmt.Errorf("key name %q used twice", k.Name))
		case !strings.HasPrefix(k.URI, "file://") && !isKMS(k.URI):
			errs = append(errs, fmt.Errorf("key %s: uri must be file://, awskms://, gcpkms://, azurekms:// or hashivault://", k.Name))
		}
		names[k.Name] = true
	}
	if c.DefaultKey != "" && !names[c.DefaultKey] && (len(c.Keys) != 0 || c.DefaultKey != "default") {
		errs = append(errs, fmt.Errorf("default_key %q is not a configured key", c.DefaultKey))
	}
	if u, err := url.Parse(c.BuilderID); err != nil || !u.IsAbs() {
		errs = append(errs, fmt.Errorf("builder_id %q: want an absolute URI", c.BuilderID))
	}
	if c.GateTimeout <= 0 || c.AdmissionDeadline <= 0 || c.VerdictTTL < 0 {
		errs = append(errs, errors.New("gate_timeout and admission_deadline must be positive"))
	}
	if c.RevalidateWindow <= 0 || c.RevalidateInterval < time.Second {
		errs = append(errs, errors.New("revalidate_window must be positive and revalidate_interval at least 1s"))
	}
	if c.RevalidateWebhookURL != "" {
		if _, err := notify.New(c.RevalidateWebhookURL, c.RevalidateWebhookAllow, "attestd", notify.Options{}); err != nil {
			errs = append(errs, fmt.Errorf("revalidate_webhook_url: %w (revalidate_webhook_allow lists the hosts it may be)", err))
		}
	}
	if c.VSAMaxAge < time.Minute {
		errs = append(errs, fmt.Errorf("vsa_max_age %s: want at least 1m", c.VSAMaxAge))
	}
	if c.AdmissionUnknownKinds != "deny" && c.AdmissionUnknownKinds != "allow" {
		errs = append(errs, fmt.Errorf("admission_unknown_kinds %q: want deny or allow", c.AdmissionUnknownKinds))
	}
	if c.RequestTimeout <= 0 || c.UploadTimeout <= 0 {
		errs = append(errs, errors.New("request_timeout and upload_timeout must be positive"))
	}
	if c.SBOMWorkers <= 0 || c.SBOMMaxBytes <= 0 || c.SBOMTimeout <= 0 {
		errs = append(errs, errors.New("sbom_workers, sbom_max_bytes and sbom_timeout must be positive"))
	}
	if c.KMSTimeout <= 0 {
		errs = append(errs, errors.New("kms_timeout must be positive"))
	}
	if c.DatabaseURL != "" && c.JobsDatabaseURL != "" && c.DatabaseURL != c.JobsDatabaseURL {
		errs = append(errs, errors.New("database_url and its deprecated name jobs_database_url differ: set database_url only"))
	}
	if u := c.SharedDatabase(); u != "" && !strings.HasPrefix(u, "postgres://") && !strings.HasPrefix(u, "postgresql://") {
		errs = append(errs, errors.New("database_url: want a postgres:// URL"))
	}
	if c.SharedDatabase() != "" && c.EmbeddedRegistry.Enabled {
		errs = append(errs, errors.New("database_url shares attestd's state between replicas, but the embedded registry serves one process: "+
			"set --embedded-registry=false and name the registry every replica uses with --registries"))
	}
	if _, err := identity.New(c.OIDC.Issuers, c.OIDC.Rules, identity.Options{}); err != nil {
		errs = append(errs, fmt.Errorf("oidc: %w", err))
	}
	if !c.EmbeddedRegistry.Enabled && len(c.Registries) == 0 {
		errs = append(errs, errors.New("no registry: enable the embedded registry or configure one"))
	}
	if c.LogOrigin != "" && !validOrigin(c.LogOrigin) {
		errs = append(errs, fmt.Errorf("log_origin %q: want a name without spaces or '+', such as attestd/registry.example.com", c.LogOrigin))
	}
	if c.LogDatabaseURL != "" {
		if _, err := auditlog.MySQLDSN(c.LogDatabaseURL); err != nil {
			errs = append(errs, fmt.Errorf("log_database_url: want mysql://user:password@host:port/database"))
		}
		if c.LogDir != "" {
			errs = append(errs, errors.New("log_dir and log_database_url name two audit logs: set one"))
		}
		if c.LogKeyFile == "" {
			errs = append(errs, errors.New("log_database_url is the audit log replicas share: set log_key_file to the key they all sign checkpoints with"))
		}
	}
	if c.SharedDatabase() != "" && c.LogDatabaseURL == "" && c.LogDir == "" && !c.UnsafeNoAuditLog {
		errs = append(errs, errors.New("database_url shares the record between replicas, and each replica's events must go to one audit log: "+
			"set log_database_url (MariaDB or MySQL) with log_key_file, or log_dir for one process"))
	}
	return errors.Join(errs...)
}

// SharedDatabase is the PostgreSQL URL of the index and job queue, "" for
// SQLite in the data dir: database_url, or its deprecated name.
func (c *Config) SharedDatabase() string {
	if c.DatabaseURL != "" {
		return c.DatabaseURL
	}
	return c.JobsDatabaseURL
}

// validOrigin: a note name, non-empty, without spaces or '+'.
func validOrigin(o string) bool {
	return o != "" && len(o) <= 256 && !strings.ContainsAny(o, " +\t\n\r")
}

func isKMS(uri string) bool {
	for _, p := range []string{"awskms://", "gcpkms://", "azurekms://", "hashivault://"} {
		if strings.HasPrefix(uri, p) {
			return true
		}
	}
	return false
}
