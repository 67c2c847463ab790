package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/cheggaaa/pb/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/attestd/attestd/api/wire"
)

func sbomCmd(g *globals) *cobra.Command {
	var formats []string
	var wait bool
	var outFile string
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "sbom SUBJECT [--wait] [-f spdx-json] [--out FILE]",
		Short: "Have attestd generate, sign and store SBOMs of SUBJECT; with --wait, show progress until done",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			ctx := c.Context()
			j, err := cl.SBOM(ctx, wire.SBOMRequest{Subject: subject(args[0]), Formats: formats})
			if err != nil {
				return err
			}
			if wait || outFile != "" {
				if j, err = waitForJob(c, g, j, timeout); err != nil {
					return err
				}
			}
			if outFile != "" {
				if err := writeSBOM(c, g, j, outFile); err != nil {
					return err
				}
			}
			return g.print(c.OutOrStdout(), j, func(w io.Writer) {
				fmt.Fprintf(w, "Job %d: %s (%s)\n", j.ID, j.State, j.Stage)
				for _, r := range j.Results {
					fmt.Fprintf(w, "  %s: %d packages, syft %s, stored at %s\n", r.Format, r.Packages, r.ToolVersion, r.Referrer)
				}
				for _, e := range j.Errors {
					fmt.Fprintf(w, "  error: %s\n", e)
				}
			})
		},
	}
	c.Flags().StringSliceVarP(&formats, "format", "f", nil, "spdx-json, cyclonedx-json (default spdx-json)")
	c.Flags().BoolVar(&wait, "wait", false, "wait for the job, showing progress")
	c.Flags().StringVar(&outFile, "out", "", "write the SBOM (the first format) to this file; implies --wait")
	c.Flags().DurationVar(&timeout, "timeout", 30*time.Minute, "how long --wait waits")
	return c
}

// waitForJob polls the job, showing its stage and progress on a terminal.
func waitForJob(c *cobra.Command, g *globals, j wire.Job, timeout time.Duration) (wire.Job, error) {
	cl, err := g.client()
	if err != nil {
		return j, err
	}
	var bar *pb.ProgressBar
	if fd, ok := c.ErrOrStderr().(*os.File); ok && term.IsTerminal(int(fd.Fd())) { //nolint:gosec // a file descriptor fits an int
		bar = pb.New(100).SetTemplateString(`{{string . "stage"}} {{bar . }} {{percent . }}`).SetWriter(fd).Start()
		defer bar.Finish()
	}
	deadline := time.Now().Add(timeout)
	last := ""
	// The first polls come quickly (a stored result or a short job answers
	// in milliseconds), then back off to twice a second.
	pause := 5 * time.Millisecond
	for {
		switch j.State {
		case "completed":
			return j, nil
		case "cancelled", "discarded":
			return j, fmt.Errorf("job %d %s: %s", j.ID, j.State, strings.Join(j.Errors, "; "))
		}
		if bar != nil {
			bar.Set("stage", j.Stage).SetCurrent(int64(j.Progress * 100))
		} else if j.Stage != last {
			fmt.Fprintf(c.ErrOrStderr(), "job %d: %s (%.0f%%)\n", j.ID, j.Stage, j.Progress*100)
			last = j.Stage
		}
		if time.Now().After(deadline) {
			return j, fmt.Errorf("job %d is still %s after %s", j.ID, j.State, timeout)
		}
		select {
		case <-c.Context().Done():
			return j, c.Context().Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, 500*time.Millisecond)
		if j, err = cl.Job(c.Context(), j.ID); err != nil {
			return j, err
		}
	}
}

// writeSBOM fetches the signed SBOM of the first result and writes its predicate.
func writeSBOM(c *cobra.Command, g *globals, j wire.Job, path string) error {
	if len(j.Results) == 0 {
		return errors.New("the job has no result")
	}
	cl, err := g.client()
	if err != nil {
		return err
	}
	r := j.Results[0]
	repo, _, _ := strings.Cut(j.Image, "@")
	list, err := cl.Attestations(c.Context(), repo, r.Digest, r.PredicateType)
	if err != nil {
		return err
	}
	for _, a := range list.Attestations {
		if !a.Valid {
			continue
		}
		var env struct{ Payload string }
		if json.Unmarshal(a.Envelope, &env) != nil {
			continue
		}
		p, err := base64.StdEncoding.DecodeString(env.Payload)
		if err != nil {
			continue
		}
		var st struct {
			Predicate json.RawMessage `json:"predicate"`
		}
		if json.Unmarshal(p, &st) != nil {
			continue
		}
		return os.WriteFile(path, st.Predicate, 0o644) //nolint:gosec // an SBOM is not secret
	}
	return errors.New("no verified SBOM attestation found")
}
