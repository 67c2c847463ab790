// Command gobin is a tiny Go program whose build information names a
// dependency, for SBOM tests.
package main

import (
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
)

func main() {
	r, err := name.ParseReference("example.com/app:v1")
	fmt.Println(r, err)
}
