package api

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/attestd/attestd/api/wire"
)

// FuzzDecodeSign feeds request bodies through the body limit and the
// decoder: every input is either decoded or refused with a classified 4xx.
func FuzzDecodeSign(f *testing.F) {
	for _, s := range []string{`{"image":"a/b:c"}`, `{"image":`, `[]`, `{"image":"x"} {}`, `{"image":"x","y":1}`, strings.Repeat("{", 300)} {
		f.Add([]byte(s))
	}
	e := echo.New()
	limit := middleware.BodyLimit("256B")
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(string(body)))
		rec := httptest.NewRecorder()
		c := e.NewContext(req, rec)
		var got wire.SignRequest
		err := limit(func(c echo.Context) error { return decode(c, &got) })(c)
		if err == nil {
			if len(body) > 256 {
				t.Fatalf("decoded a %d-byte body over the limit", len(body))
			}
			return
		}
		status, eb := classify(err)
		if status != http.StatusBadRequest && status != http.StatusRequestEntityTooLarge {
			t.Fatalf("body %q: status %d (%v)", body, status, err)
		}
		if eb.Code == "" || eb.Message == "" {
			t.Fatalf("unclassified error %v", err)
		}
		var he *echo.HTTPError
		if status == http.StatusRequestEntityTooLarge && !errors.As(err, &he) {
			t.Fatal("413 without an echo error")
		}
	})
}
