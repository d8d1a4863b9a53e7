package bounded

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"net/http"
)

// ReadBody reads a request body of at most max bytes, and at most max bytes once gunzipped when its
// Content-Encoding is gzip. It returns the plain body, or the HTTP status to answer with: 413 over the
// bound (before or after gzip, so a gzip bomb costs at most max), 400 for a body that does not gunzip, 415
// for an encoding other than gzip or identity.
func ReadBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, int) {
	if r.ContentLength > max {
		return nil, http.StatusRequestEntityTooLarge
	}
	encoding := r.Header.Get("Content-Encoding")
	if encoding != "" && encoding != "identity" && encoding != "gzip" {
		return nil, http.StatusUnsupportedMediaType
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, http.StatusRequestEntityTooLarge
		}
		return nil, http.StatusBadRequest
	}
	if encoding != "gzip" {
		return body, 0
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		return nil, http.StatusBadRequest
	}
	plain, err := io.ReadAll(io.LimitReader(zr, max+1))
	if err != nil {
		return nil, http.StatusBadRequest
	}
	if int64(len(plain)) > max {
		return nil, http.StatusRequestEntityTooLarge
	}
	return plain, 0
}
