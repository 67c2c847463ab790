package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/attestd/attestd/internal/app"
	"github.com/attestd/attestd/service"
)

func reindexCmd() *cobra.Command {
	var repos []string
	c := &cobra.Command{
		Use:   "reindex [--repository HOST/PATH]...",
		Short: "Rebuild the index's evidence rows from the registry",
		Long: "Read every signature and attestation stored for the digests the repositories' tags name, and\n" +
			"record in the index those a known key verifies and the index lacks (one evidence.reindexed event\n" +
			"per digest). Without --repository, every repository of the registries' catalogs. The registry is\n" +
			"the source of truth for evidence; reindex is idempotent and safe while attestd serves. It takes\n" +
			"serve's settings (the same data dir or database_url, and registries).",
		Args: cobra.NoArgs,
	}
	settingFlags(c)
	c.Flags().StringArrayVar(&repos, "repository", nil, "repository to reindex, host/path (repeatable; default: every repository of the catalogs)")
	c.RunE = func(c *cobra.Command, _ []string) error {
		cfg, err := loadConfig(c)
		if err != nil {
			return err
		}
		var level slog.Level
		if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
			return err
		}
		log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: max(level, slog.LevelWarn)}))
		start := time.Now()
		st, err := app.Reindex(c.Context(), cfg, repos, progress(c.ErrOrStderr()), log)
		clearLine(c.ErrOrStderr())
		if err != nil {
			return err
		}
		fmt.Fprintf(c.OutOrStdout(), "Reindexed %d repositories, %d digests in %s: %d copies verified, %d new rows recorded (%d events), %d SBOMs indexed by package.\n",
			st.RepositoriesDone, st.Digests, time.Since(start).Round(time.Millisecond), st.Copies, st.New, st.Events, st.SBOMs)
		return nil
	}
	return c
}

// progress shows a reindex's progress on one line of a terminal, or a line
// per repository otherwise.
func progress(w io.Writer) service.ReindexProgress {
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd())) //nolint:gosec // a file descriptor fits an int
	}
	lastDone := 0
	return func(st service.ReindexStats, repo string) {
		line := fmt.Sprintf("reindex: %d/%d repositories, %d digests, %d copies, %d new  %s", st.RepositoriesDone, st.Repositories, st.Digests, st.Copies, st.New, repo)
		if tty {
			fmt.Fprintf(w, "\r\033[K%s", line)
			return
		}
		if st.RepositoriesDone != lastDone { // a repository is done
			fmt.Fprintln(w, line)
			lastDone = st.RepositoriesDone
		}
	}
}

func clearLine(w io.Writer) {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) { //nolint:gosec // a file descriptor fits an int
		fmt.Fprint(w, "\r\033[K")
	}
}
