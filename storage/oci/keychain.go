package oci

import (
	"fmt"
	"io"
	"os"

	"github.com/docker/cli/cli/config/configfile"
	"github.com/docker/cli/cli/config/types"
	"github.com/google/go-containerregistry/pkg/authn"
)

// DockerConfigKeychain returns a keychain reading credentials from the docker
// config.json at path (auths entries and credential helpers, as docker does).
func DockerConfigKeychain(path string) (authn.Keychain, error) {
	f, err := os.Open(path) //nolint:gosec // the operator names the file
	if err != nil {
		return nil, fmt.Errorf("docker config: %w", err)
	}
	defer f.Close()
	cf := configfile.New(path)
	if err := cf.LoadFromReader(io.LimitReader(f, 1<<20)); err != nil {
		return nil, fmt.Errorf("docker config %s: %w", path, err)
	}
	return dockerKeychain{cf: cf}, nil
}

type dockerKeychain struct{ cf *configfile.ConfigFile }

func (k dockerKeychain) Resolve(res authn.Resource) (authn.Authenticator, error) {
	key := res.RegistryStr()
	if key == "index.docker.io" {
		key = "https://index.docker.io/v1/"
	}
	var ac types.AuthConfig
	ac, err := k.cf.GetAuthConfig(key)
	if err != nil {
		return nil, err
	}
	if ac == (types.AuthConfig{}) {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(authn.AuthConfig{
		Username: ac.Username, Password: ac.Password, Auth: ac.Auth,
		IdentityToken: ac.IdentityToken, RegistryToken: ac.RegistryToken,
	}), nil
}
