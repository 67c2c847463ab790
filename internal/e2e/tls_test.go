package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/attestd/attestd/internal/app"
	"github.com/attestd/attestd/internal/testenv"
	"github.com/attestd/attestd/service"
)

// serving writes a certificate for 127.0.0.1 with serial, signed by ca
// (self-signed when ca is nil), and its key, into dir; it returns the CA.
func serving(t *testing.T, dir string, serial int64) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "attestd.attestd.svc"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"attestd.attestd.svc"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// The key first: a reader between the two writes sees a mismatched
	// pair, which must not replace the certificate in service.
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert
}

// TestHTTPSListener: with tls_listen, the API (the admission webhook
// included) is served over HTTPS with the configured certificate, next to
// the plain listener; a rotated certificate is served without a restart,
// and a broken pair keeps the last good one in service.
func TestHTTPSListener(t *testing.T) {
	dir := t.TempDir()
	first := serving(t, dir, 1)
	s := testenv.Start(t, func(c *app.Config) {
		c.TLSListen, c.TLSCertFile, c.TLSKeyFile = "127.0.0.1:0", filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	})
	if !strings.HasPrefix(s.TLSURL, "https://127.0.0.1:") {
		t.Fatalf("TLS URL %q", s.TLSURL)
	}
	client := func(ca *x509.Certificate) *http.Client {
		pool := x509.NewCertPool()
		pool.AddCert(ca)
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, DisableKeepAlives: true}}
	}
	serial := func(c *http.Client) (int64, error) {
		resp, err := c.Get(s.TLSURL + "/healthz")
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.TLS.PeerCertificates[0].SerialNumber.Int64(), nil
	}
	if n, err := serial(client(first)); err != nil || n != 1 {
		t.Fatalf("healthz over HTTPS: serial %d, %v", n, err)
	}

	// The admission webhook over HTTPS, as the API server calls it.
	verifier := s.Token(t, service.RoleVerifier)
	body := review(map[string]string{"group": "", "version": "v1", "kind": "Pod"},
		`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"`+s.RegistryHost+`/nowhere/app@sha256:`+strings.Repeat("ab", 32)+`"}]}}`)
	req, _ := http.NewRequest(http.MethodPost, s.TLSURL+"/v1/admission", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+verifier)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client(first).Do(req)
	if err != nil {
		t.Fatalf("admission over HTTPS: %v", err)
	}
	var r reviewResponse
	err = json.NewDecoder(resp.Body).Decode(&r)
	_ = resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || r.Response.Allowed || r.Response.UID != "u-1" {
		t.Errorf("admission over HTTPS: %d %+v %v; want a deny for u-1", resp.StatusCode, r.Response, err)
	}

	// Plain HTTP on the TLS port is not served.
	if resp, err := http.Get("http" + strings.TrimPrefix(s.TLSURL, "https") + "/healthz"); err == nil {
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP answered on the TLS listener")
		}
	}
	// A client that does not trust the certificate is refused.
	if _, err := serial(client(serving(t, t.TempDir(), 99))); err == nil {
		t.Error("a client with another CA accepted the certificate")
	}

	// A broken pair (a key with no certificate) keeps the last good one.
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	if n, err := serial(client(first)); err != nil || n != 1 {
		t.Errorf("after a broken pair: serial %d, %v; want the last good certificate", n, err)
	}
	// Rotation: the new certificate is served without a restart.
	second := serving(t, dir, 2)
	var n int64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if n, err = serial(client(second)); err == nil && n == 2 {
			break
		}
	}
	if n != 2 {
		t.Errorf("after rotation: serial %d, %v; want 2", n, err)
	}
}

// TestHTTPSListenerRefusesHalfConfigurations: tls_listen without its
// certificate and key, or with a pair that does not match, stops start-up.
func TestHTTPSListenerRefusesHalfConfigurations(t *testing.T) {
	cfg := app.Defaults()
	cfg.DataDir = t.TempDir()
	cfg.TLSListen = "127.0.0.1:0"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "go together") {
		t.Errorf("tls_listen alone: %v", err)
	}
	a, b := t.TempDir(), t.TempDir()
	serving(t, a, 1)
	serving(t, b, 2)
	cfg.TLSCertFile, cfg.TLSKeyFile = filepath.Join(a, "tls.crt"), filepath.Join(b, "tls.key")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := app.New(t.Context(), cfg, "", ln, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "tls") {
		t.Errorf("a mismatched pair: %v; want start-up to stop", err)
	}
}
