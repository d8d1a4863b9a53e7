package bounded

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"net"
	"net/http"
	"time"
)

// SkipLinger is how long a request whose body is not read may still send it: net/http reads and discards
// up to 256 KiB of an unread body before it closes the connection. A client that sent its body at once
// (its kernel buffers hold it) is drained within this time and sees the response; a client that trickles
// its body is cut off, instead of being drained at its own pace for as long as it likes. Without any drain
// the server's close of a socket with unread data resets the connection, and a client that is still
// writing may lose the response to the reset.
const SkipLinger = 500 * time.Millisecond

// SkipBody prepares the response to a request whose body the handler will not read (a refusal before
// reading: 401, 405, 413, 415, 503): the response says Connection: close, so net/http does not drain the
// body before it writes the response, and the connection's read deadline is SkipLinger from now, so the
// drain at the end of the request stops there. Requests without a body (WebSocket upgrades, GETs) keep
// their connection. Call it before writing the response header.
func SkipBody(w http.ResponseWriter, r *http.Request) {
	if r.Body == nil || r.Body == http.NoBody {
		return
	}
	w.Header().Set("Connection", "close")
	// Only a ResponseWriter that is not net/http's own lacks it, and then there is no connection to bound.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(SkipLinger))
}

// ReadBody reads a request body of at most max bytes, and at most max bytes once gunzipped when its
// Content-Encoding is gzip. It returns the plain body, or the HTTP status to answer with: 413 over the
// bound (before or after gzip, so a gzip bomb costs at most max), 408 when the body did not arrive in time
// (the listener's read deadline), 400 for a body that does not gunzip or breaks off, 415 for an encoding
// other than gzip or identity. After a failure the connection is closed once the response is written.
func ReadBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, int) {
	if r.ContentLength > max {
		SkipBody(w, r)
		return nil, http.StatusRequestEntityTooLarge
	}
	encoding := r.Header.Get("Content-Encoding")
	if encoding != "" && encoding != "identity" && encoding != "gzip" {
		SkipBody(w, r)
		return nil, http.StatusUnsupportedMediaType
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		SkipBody(w, r)
		var tooLarge *http.MaxBytesError
		var netErr net.Error
		switch {
		case errors.As(err, &tooLarge):
			return nil, http.StatusRequestEntityTooLarge
		case errors.As(err, &netErr) && netErr.Timeout():
			return nil, http.StatusRequestTimeout
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
