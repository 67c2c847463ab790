// Package repomatch matches repository names ("host/path") against the
// patterns keys, tokens and policies use: path.Match globs, where a pattern
// ending in "/**" matches any repository below the part before it, and "**"
// alone matches every repository.
package repomatch

import (
	"path"
	"strings"
)

// All is the pattern that matches every repository.
const All = "**"

// Match reports whether repo matches pattern.
func Match(pattern, repo string) bool {
	if pattern == All {
		return repo != ""
	}
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
	if pattern == All {
		return true
	}
	_, err := path.Match(strings.TrimSuffix(pattern, "/**"), "x")
	return err == nil
}

// Any reports whether repo matches one of patterns.
func Any(patterns []string, repo string) bool {
	for _, p := range patterns {
		if Match(p, repo) {
			return true
		}
	}
	return false
}
