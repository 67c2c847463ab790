// Package repomatch matches repository names ("host/path") against the
// patterns keys and policies use: path.Match globs, where a pattern ending
// in "/**" matches any repository below the part before it.
package repomatch

import (
	"path"
	"strings"
)

// Match reports whether repo matches pattern.
func Match(pattern, repo string) bool {
	prefix, subtree := strings.CutSuffix(pattern, "/**")
	if !subtree {
		ok, err := path.Match(pattern, repo)
		return err == nil && ok
	}
	n := strings.Count(prefix, "/") + 1
	segs := strings.Split(repo, "/")
	if len(segs) <= n {
		return false
	}
	ok, err := path.Match(prefix, strings.Join(segs[:n], "/"))
	return err == nil && ok
}

// Valid reports whether pattern is a well-formed pattern.
func Valid(pattern string) bool {
	if pattern == "" {
		return false
	}
	_, err := path.Match(strings.TrimSuffix(pattern, "/**"), "x")
	return err == nil
}
