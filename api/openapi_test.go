package api

import (
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/attestd/attestd/service"
)

// TestOpenAPIDocumentsEveryRoute fails when a route is added without docs.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	b, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	e := New(Config{Log: slog.New(slog.DiscardHandler), Metrics: prometheus.NewRegistry(), MaxBodyBytes: 1, Registry: http.NotFoundHandler(),
		AuditLog: service.NewAuditLog(nil, nil, "k", false)})
	param := regexp.MustCompile(`:([a-z]+)`)
	seen := 0
	for _, r := range e.Routes() {
		if strings.HasPrefix(r.Method, "echo_route_not_found") {
			continue
		}
		if strings.HasPrefix(r.Path, "/v2") || r.Method == "echo_route_any" {
			if _, ok := doc.Paths["/v2/"]; !ok {
				t.Error("openapi.yaml does not document the embedded registry (/v2/)")
			}
			continue
		}
		p := strings.Replace(param.ReplaceAllString(r.Path, "{$1}"), "/*", "/{path}", 1)
		ops, ok := doc.Paths[p]
		if !ok {
			t.Errorf("route %s %s is not in openapi.yaml", r.Method, p)
			continue
		}
		if _, ok := ops[strings.ToLower(r.Method)]; !ok {
			t.Errorf("openapi.yaml documents %s but not its %s", p, r.Method)
		}
		seen++
	}
	if seen < 7 {
		t.Errorf("only %d routes checked", seen)
	}
}
