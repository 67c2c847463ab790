package registry

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// chunkedUpload pushes blob to repo in two PATCHes and a PUT naming digest,
// the way a resuming client does, and returns the PUT's status.
func chunkedUpload(t *testing.T, url, repo string, blob []byte, digest string) int {
	t.Helper()
	do := func(method, u string, body []byte, hdr map[string]string) *http.Response {
		if !strings.HasPrefix(u, "http") {
			u = url + u
		}
		req, err := http.NewRequest(method, u, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	resp := do(http.MethodPost, url+"/v2/"+repo+"/blobs/uploads/", nil, nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST: %s", resp.Status)
	}
	loc := resp.Header.Get("Location")
	half := len(blob) / 2
	for i, part := range [][]byte{blob[:half], blob[half:]} {
		start := i * half
		resp = do(http.MethodPatch, loc, part, map[string]string{
			"Content-Type":  "application/octet-stream",
			"Content-Range": fmt.Sprintf("%d-%d", start, start+len(part)-1),
		})
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("PATCH %d: %s", i, resp.Status)
		}
		loc = resp.Header.Get("Location")
	}
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	return do(http.MethodPut, loc+sep+"digest="+digest, nil, nil).StatusCode
}

// Chunked uploads resume from the scratch hash states: the upload is stored
// under its digest, and a wrong digest is still refused.
func TestChunkedUploads(t *testing.T) {
	dir := t.TempDir()
	h, err := New(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	blob := make([]byte, 300<<10)
	_, _ = rand.Read(blob)
	sum := fmt.Sprintf("sha256:%x", sha256.Sum256(blob))
	if code := chunkedUpload(t, srv.URL, "team/app", blob, sum); code != http.StatusCreated {
		t.Fatalf("chunked upload: %d, want 201", code)
	}
	resp, err := http.Get(srv.URL + "/v2/team/app/blobs/" + sum)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got, blob) {
		t.Fatalf("read back %d bytes (%s), want the %d uploaded", len(got), resp.Status, len(blob))
	}

	wrong := fmt.Sprintf("sha256:%x", sha256.Sum256([]byte("something else")))
	if code := chunkedUpload(t, srv.URL, "team/app", blob, wrong); code != http.StatusBadRequest {
		t.Fatalf("upload under a wrong digest: %d, want 400", code)
	}
	resp, err = http.Head(srv.URL + "/v2/team/app/blobs/" + wrong)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("blob under the wrong digest: %s, want 404", resp.Status)
	}

}

// Scratch files of an upload are stored (without fsync); everything else
// goes through the filesystem driver.
func TestScratchFilesAreStored(t *testing.T) {
	dir := t.TempDir()
	d, err := scratchFactory{}.Create(context.Background(), map[string]any{"rootdirectory": dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	base := "/docker/registry/v2/repositories/a/_uploads/u1/"
	for _, p := range []string{
		base + "hashstates/sha256/1024",
		base + "startedat",
		"/docker/registry/v2/repositories/a/_layers/sha256/x/link",
	} {
		if err := d.PutContent(ctx, p, []byte(p)); err != nil {
			t.Fatal(err)
		}
		got, err := d.GetContent(ctx, p)
		if err != nil || string(got) != p {
			t.Errorf("%s read back %q, %v", p, got, err)
		}
	}
}
