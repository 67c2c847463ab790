package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/attestd/attestd/api/client"
	"github.com/attestd/attestd/internal/app"
	"github.com/attestd/attestd/internal/testenv"
	"github.com/attestd/attestd/internal/testenv/hostile"
)

// TestRealmOnOtherHostGetsNoCredentials: a configured registry whose 401
// names a token realm on another host. Without token_realms the realm
// receives nothing (ggcr alone sends it the registry's username and
// password) and the sign fails naming the realm host and the setting; with
// the realm configured it receives the credentials and the sign works.
func TestRealmOnOtherHostGetsNoCredentials(t *testing.T) {
	ctx := context.Background()
	for _, configured := range []bool{false, true} {
		t.Run(fmt.Sprintf("token_realms configured: %v", configured), func(t *testing.T) {
			reg := hostile.New(t)
			realm := hostile.NewRealm(t, "ci", "s3cret", "tok")
			d, _ := reg.PushRandom(t, "realm/app")
			reg.RequireBearer(realm.URL, "tok")
			t.Setenv("ATTESTD_TEST_REGISTRY_PASSWORD", "s3cret")
			rc := app.Registry{Host: reg.Host, Username: "ci", PasswordEnv: "ATTESTD_TEST_REGISTRY_PASSWORD"}
			if configured {
				rc.TokenRealms = []string{realm.Host}
			}
			s := testenv.Start(t, func(c *app.Config) { c.Registries = []app.Registry{rc} })

			_, err := s.Client(t, s.Token(t, "signer")).Sign(ctx, d.String())
			if configured {
				if err != nil || !realm.SawCredentials() {
					t.Fatalf("sign with the realm configured: %v (realm saw credentials: %v)", err, realm.SawCredentials())
				}
				sigTag := reg.OnDirect(t, d).Context().Tag(strings.Replace(d.DigestStr(), ":", "-", 1) + ".sig")
				if _, err := remote.Head(sigTag); err != nil {
					t.Errorf("no signature stored: %v", err)
				}
				return
			}
			var ce *client.Error
			if !errors.As(err, &ce) || ce.Status != http.StatusBadGateway || !strings.Contains(ce.Message, realm.Host) || !strings.Contains(ce.Message, "token_realms") {
				t.Fatalf("sign against a foreign realm: %v, want 502 naming %s and token_realms", err, realm.Host)
			}
			if realm.Requests() != 0 || realm.SawCredentials() {
				t.Errorf("the foreign realm got %d requests (credentials: %v)", realm.Requests(), realm.SawCredentials())
			}
		})
	}
}
