package sbom

import "runtime/debug"

// syftVersion reads syft's module version from the build information.
func syftVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == "github.com/anchore/syft" {
				return m.Version
			}
		}
	}
	return "unknown"
}
