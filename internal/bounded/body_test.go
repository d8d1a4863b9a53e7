package bounded

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

func gz(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestReadBody(t *testing.T) {
	const max = 1 << 10
	small := []byte("hello")
	bomb := gz(t, bytes.Repeat([]byte{0}, 64*max))
	for _, tc := range []struct {
		name       string
		body       []byte
		encoding   string
		wantStatus int
		want       []byte
	}{
		{"plain", small, "", 0, small},
		{"identity", small, "identity", 0, small},
		{"gzip", gz(t, small), "gzip", 0, small},
		{"too large", bytes.Repeat([]byte("x"), max+1), "", http.StatusRequestEntityTooLarge, nil},
		{"gzip bomb", bomb, "gzip", http.StatusRequestEntityTooLarge, nil},
		{"not gzip", small, "gzip", http.StatusBadRequest, nil},
		{"unknown encoding", small, "br", http.StatusUnsupportedMediaType, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(tc.body))
			if tc.encoding != "" {
				r.Header.Set("Content-Encoding", tc.encoding)
			}
			got, status := ReadBody(httptest.NewRecorder(), r, max)
			if status != tc.wantStatus || !bytes.Equal(got, tc.want) {
				t.Fatalf("ReadBody = %q, %d; want %q, %d", got, status, tc.want, tc.wantStatus)
			}
		})
	}
	t.Run("declared length over the bound is refused before reading", func(t *testing.T) {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("x"))
		r.ContentLength = max + 1
		if _, status := ReadBody(httptest.NewRecorder(), r, max); status != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d, want 413", status)
		}
	})
}

// timeoutReader fails as a connection past its read deadline does.
type timeoutReader struct{}

func (timeoutReader) Read([]byte) (int, error) { return 0, os.ErrDeadlineExceeded }

func TestReadBodyTimesOut(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/", io.NopCloser(timeoutReader{}))
	w := httptest.NewRecorder()
	if _, status := ReadBody(w, r, 1<<10); status != http.StatusRequestTimeout {
		t.Fatalf("status %d, want 408", status)
	}
	if got := w.Header().Get("Connection"); got != "close" {
		t.Fatalf("Connection: %q; a body left half read must end the connection", got)
	}
}

func TestSkipBody(t *testing.T) {
	for _, tc := range []struct {
		name string
		body io.Reader
		want string
	}{
		{"a body closes the connection", strings.NewReader("x"), "close"},
		{"no body keeps it", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/", tc.body)
			w := httptest.NewRecorder()
			SkipBody(w, r)
			if got := w.Header().Get("Connection"); got != tc.want {
				t.Fatalf("Connection: %q, want %q", got, tc.want)
			}
		})
	}
}
