package testenv

import (
	"context"
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
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "PORT="+port, "KMS_REGION=eu-west-2", "KMS_DATA_PATH="+filepath.Join(dir, "data"), "KMS_SEED_PATH="+filepath.Join(dir, "none.yaml"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	k := &LocalKMS{Endpoint: "http://127.0.0.1:" + port, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(k.done) }()
	t.Cleanup(k.Stop)
	for i := 0; ; i++ {
		resp, err := http.Get(k.Endpoint)
		if err == nil {
			_ = resp.Body.Close()
			break
		}
		if i > 100 {
			t.Fatalf("local-kms did not start: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Setenv("AWS_ENDPOINT_URL", k.Endpoint)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIAATTESTDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", AWSSecret)
	t.Setenv("AWS_REGION", "eu-west-2")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	return k
}

// Stop kills local-kms, as an outage would, and waits for it to exit.
func (k *LocalKMS) Stop() {
	_ = k.cmd.Process.Kill()
	<-k.done
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
