package app

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"
)

// certReloader serves the certificate in a pair of PEM files and reads
// them again when either changes (a rotation by cert-manager or by hand),
// checked at most once a second. A pair that no longer loads keeps the
// last good certificate in service and is logged by the caller's server.
type certReloader struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string
	checked time.Time
}

func newCertReloader(certFile, keyFile string) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile}
	if err := r.reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// stampOf is what says the files changed: their sizes and times.
func (r *certReloader) stampOf() (string, error) {
	c, err := os.Stat(r.certFile)
	if err != nil {
		return "", err
	}
	k, err := os.Stat(r.keyFile)
	if err != nil {
		return "", err
	}
	return fmt.Sprint(c.Size(), c.ModTime().UnixNano(), k.Size(), k.ModTime().UnixNano()), nil
}

func (r *certReloader) reload() error {
	stamp, err := r.stampOf()
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	r.cert, r.stamp, r.checked = &cert, stamp, time.Now()
	return nil
}

// GetCertificate is tls.Config.GetCertificate.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) >= time.Second {
		r.checked = time.Now()
		if stamp, err := r.stampOf(); err == nil && stamp != r.stamp {
			_ = r.reload() // a half-written pair: keep serving the last good one
		}
	}
	return r.cert, nil
}

// tlsConfig is the server's TLS configuration: TLS 1.2 or later.
func (r *certReloader) tlsConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate, NextProtos: []string{"h2", "http/1.1"}}
}
