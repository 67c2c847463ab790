package testenv

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// LocalKMS is a running github.com/nsmithuk/local-kms (the AWS KMS API).
type LocalKMS struct {
	Endpoint string
	cmd      *exec.Cmd
	done     chan struct{}
	bin      string
	env      []string
}

// AWSSecret is the dummy secret access key tests use, so that they can check
// it never appears in attestd's log or responses.
const AWSSecret = "attestd-test-secret-ZmFrZS1hd3Mtc2VjcmV0"

// StartLocalKMS runs local-kms on a free loopback port until the test ends,
// and points the AWS SDK of this process at it (AWS_ENDPOINT_URL, dummy
// credentials and region). The binary's path comes from ATTESTD_LOCAL_KMS.
func StartLocalKMS(t testing.TB) *LocalKMS {
	t.Helper()
	bin := os.Getenv("ATTESTD_LOCAL_KMS")
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("ATTESTD_LOCAL_KMS is not set: path of local-kms, built by make tools")
		}
		t.Skip("ATTESTD_LOCAL_KMS is not set: path of local-kms (make test sets it)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	_ = l.Close()
	dir := t.TempDir()
	k := &LocalKMS{Endpoint: "http://127.0.0.1:" + port, bin: bin,
		env: append(os.Environ(), "PORT="+port, "KMS_REGION=eu-west-2", "KMS_DATA_PATH="+filepath.Join(dir, "data"), "KMS_SEED_PATH="+filepath.Join(dir, "none.yaml"))}
	if err := k.run(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Stop)
	t.Setenv("AWS_ENDPOINT_URL", k.Endpoint)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIAATTESTDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", AWSSecret)
	t.Setenv("AWS_REGION", "eu-west-2")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	return k
}

func (k *LocalKMS) run() error {
	k.cmd = exec.Command(k.bin) //nolint:gosec // the test's own local-kms
	k.cmd.Env = k.env
	if err := k.cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	k.done = done
	go func(c *exec.Cmd) { _ = c.Wait(); close(done) }(k.cmd)
	for i := 0; ; i++ {
		resp, err := http.Get(k.Endpoint)
		if err == nil {
			_ = resp.Body.Close()
			return nil
		}
		if i > 100 {
			return fmt.Errorf("local-kms did not start: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop kills local-kms, as an outage would, and waits for it to exit.
func (k *LocalKMS) Stop() {
	_ = k.cmd.Process.Kill()
	<-k.done
}

// Restart starts local-kms again, on the same port with the same keys
// (they persist in its data dir), after Stop.
func (k *LocalKMS) Restart(t testing.TB) {
	t.Helper()
	if err := k.run(); err != nil {
		t.Fatal(err)
	}
}

// CreateKey makes an ECC_NIST_P256 signing key with the alias alias/<name>
// and returns the awskms:// reference attestd and cosign use.
func (k *LocalKMS) CreateKey(t testing.TB, name string) string {
	t.Helper()
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := kms.NewFromConfig(cfg)
	out, err := c.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: kmstypes.KeySpecEccNistP256, KeyUsage: kmstypes.KeyUsageTypeSignVerify})
	if err != nil {
		t.Fatalf("create key: %v", err)
	}
	if _, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/" + name), TargetKeyId: out.KeyMetadata.KeyId}); err != nil {
		t.Fatalf("create alias: %v", err)
	}
	return "awskms:///alias/" + name
}
