package e2e

import (
	"errors"
	"io"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func copyN(w io.Writer, r io.Reader) (int64, error) { return io.Copy(w, io.LimitReader(r, 64<<20)) }

// pushLayers pushes an image of n tiny layers to host/repo:v1.
func pushLayers(t *testing.T, host, repo string, n int) (string, v1.Image, error) {
	t.Helper()
	img, err := random.Image(1, int64(n))
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(host + "/" + repo + ":v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	return tag.String(), img, nil
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }
