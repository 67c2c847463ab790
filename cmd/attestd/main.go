// Command attestd is the attestation and signing service. `attestd serve`
// with no configuration runs everything on one machine.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/attestd/attestd/internal/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := root().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "attestd:", err)
		os.Exit(1)
	}
}

func root() *cobra.Command {
	r := &cobra.Command{
		Use:           "attestd",
		Short:         "Self-hosted supply-chain attestation and signing service",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	r.AddCommand(serveCmd(), workerCmd(), reindexCmd(), &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Run:   func(c *cobra.Command, _ []string) { fmt.Fprintln(c.OutOrStdout(), app.Version) },
	})
	return r
}

func workerCmd() *cobra.Command {
	c := serveCmd()
	c.Use = "worker"
	c.Short = "Run SBOM job workers only, apart from the API (external registries)"
	c.Long = "Work SBOM jobs from the queue in the data directory, without serving the API.\n" +
		"Takes the same settings as serve; the registries must be external (--embedded-registry=false).\n\n" + c.Long
	run := c.RunE
	c.RunE = func(cmd *cobra.Command, args []string) error {
		workerMode = true
		return run(cmd, args)
	}
	return c
}

// workerMode makes serve run workers only.
var workerMode bool

func serveCmd() *cobra.Command {
	var long strings.Builder
	long.WriteString("Serve the API and, by default, the embedded registry.\n\n")
	long.WriteString("With no configuration attestd keeps everything in --data-dir: a SQLite index,\n")
	long.WriteString("a generated password-encrypted cosign key, the registry's blobs and the\n")
	long.WriteString("bootstrap admin token (admin.token, mode 0600).\n\n")
	long.WriteString("Settings are read from the YAML file, then the environment, then flags:\n\n")
	for _, s := range app.Settings {
		flag := "--" + s.Flag
		switch {
		case s.Flag == "" && s.Env == "":
			flag = "(YAML only)"
		case s.Flag == "":
			flag = "(env only)"
		}
		fmt.Fprintf(&long, "  %-20s %-27s %-26s %s\n", flag, s.Env, s.YAML, s.Help)
	}
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run the attestd server",
		Long:  long.String(),
		Args:  cobra.NoArgs,
	}
	settingFlags(c)
	c.RunE = func(c *cobra.Command, _ []string) error {
		cfg, err := loadConfig(c)
		if err != nil {
			return err
		}
		return serve(c.Context(), cfg)
	}
	return c
}

// settingFlags adds a flag for every setting to c.
func settingFlags(c *cobra.Command) {
	d := app.Defaults()
	f := c.Flags()
	f.String("config", "", "YAML config file (env ATTESTD_CONFIG)")
	for _, s := range app.Settings {
		if s.Flag == "" || s.Flag == "config" {
			continue
		}
		f.String(s.Flag, d.Get(s.Flag), s.Help+" (env "+s.Env+")")
	}
}

// loadConfig reads the settings: the YAML file, then the environment, then
// the flags c was given.
func loadConfig(c *cobra.Command) (app.Config, error) {
	f := c.Flags()
	cfg := app.Defaults()
	path, _ := f.GetString("config")
	if path == "" {
		path = os.Getenv("ATTESTD_CONFIG")
	}
	if path != "" {
		if err := cfg.LoadFile(path); err != nil {
			return cfg, err
		}
	}
	if err := cfg.ApplyEnv(os.Getenv); err != nil {
		return cfg, err
	}
	for _, s := range app.Settings {
		if s.Flag != "" && s.Flag != "config" && f.Changed(s.Flag) {
			v, _ := f.GetString(s.Flag)
			if err := cfg.Set(s.Flag, v); err != nil {
				return cfg, err
			}
		}
	}
	return cfg, nil
}

func serve(ctx context.Context, cfg app.Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	var ln net.Listener
	if !workerMode {
		var err error
		if ln, err = (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.Listen); err != nil {
			return err
		}
	}
	a, err := app.New(ctx, cfg, os.Getenv("ATTESTD_KEY_PASSWORD"), ln, log)
	if err != nil {
		if ln != nil {
			_ = ln.Close()
		}
		return err
	}
	return a.Serve(ctx)
}
