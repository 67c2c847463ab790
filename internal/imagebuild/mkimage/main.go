// Command mkimage builds attestd's OCI image from binaries already built
// (make image): one image per platform, from scratch, written as an OCI
// layout tar. Usage:
//
//	go run ./internal/imagebuild/mkimage --bin-dir bin/image --platforms linux/amd64,linux/arm64 \
//	    --version v0.3.0 --revision $(git rev-parse HEAD) --out bin/attestd-image.tar
//
// The binaries of os/arch are read from BIN-DIR/<os>_<arch>/{attestd,attestctl}.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/attestd/attestd/internal/imagebuild"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		binDir    = flag.String("bin-dir", "bin/image", "directory of <os>_<arch>/{attestd,attestctl}")
		platforms = flag.String("platforms", "linux/amd64,linux/arm64", "comma-separated os/arch")
		ca        = flag.String("ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "CA certificates to ship (Debian's ca-certificates)")
		out       = flag.String("out", "bin/attestd-image.tar", "OCI layout tar to write")
		version   = flag.String("version", "dev", "org.opencontainers.image.version")
		revision  = flag.String("revision", "", "org.opencontainers.image.revision (the commit)")
		source    = flag.String("source", "https://github.com/attestd/attestd", "org.opencontainers.image.source")
		ref       = flag.String("ref", "", "org.opencontainers.image.ref.name in the layout's index (default: the version)")
	)
	flag.Parse()
	created := time.Unix(0, 0).UTC()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH=%q: %w", s, err)
		}
		created = time.Unix(n, 0).UTC()
	}
	var ps []imagebuild.Platform
	for _, p := range strings.Split(*platforms, ",") {
		osName, arch, ok := strings.Cut(strings.TrimSpace(p), "/")
		if !ok {
			return fmt.Errorf("platform %q: want os/arch", p)
		}
		dir := filepath.Join(*binDir, osName+"_"+arch)
		ps = append(ps, imagebuild.Platform{OS: osName, Arch: arch, Binaries: map[string]string{
			"/usr/local/bin/attestd":   filepath.Join(dir, "attestd"),
			"/usr/local/bin/attestctl": filepath.Join(dir, "attestctl"),
		}})
	}
	labels := map[string]string{
		"org.opencontainers.image.title":       "attestd",
		"org.opencontainers.image.description": "Supply-chain attestation and signing service",
		"org.opencontainers.image.source":      *source,
		"org.opencontainers.image.version":     *version,
		"org.opencontainers.image.created":     created.Format(time.RFC3339),
	}
	if *revision != "" {
		labels["org.opencontainers.image.revision"] = *revision
	}
	idx, err := imagebuild.Build(imagebuild.Options{
		CABundle: *ca, Created: created, Labels: labels,
		Entrypoint: []string{"/usr/local/bin/attestd"}, Cmd: []string{"serve"},
		Env:     []string{"ATTESTD_DATA_DIR=/var/lib/attestd", "ATTESTD_LISTEN=:8080"},
		DataDir: "/var/lib/attestd", Port: "8080/tcp",
	}, ps)
	if err != nil {
		return err
	}
	if *ref == "" {
		*ref = *version
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	if err := imagebuild.WriteLayoutTar(f, idx, *ref); err != nil {
		_ = f.Close()
		_ = os.Remove(*out)
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	d, err := idx.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s: OCI index %s (%s)\n", *out, d, *platforms)
	return nil
}
