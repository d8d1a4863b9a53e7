package bounded

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"net/http/httptest"
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
