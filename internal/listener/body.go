package listener

import (
	"errors"
	"io"
	"net/http"
	"time"
)

// deadlineBody bounds how long a request body may take: its connection's read deadline starts at the
// grace (Limits.BodyRateGrace) and moves on as bytes arrive, by one second per MinBodyRate bytes, but never past
// BodyReadTimeout. A client that trickles its body, one byte every two seconds say, hits the deadline
// within the grace; an honest slow client on a slow link keeps moving it. Once the body is read to its end
// the deadline is lifted: the handler may take its time to answer, and net/http's background read of the
// idle connection must not fail on it.
type deadlineBody struct {
	body  io.ReadCloser
	rc    *http.ResponseController
	start time.Time
	// limit is start + BodyReadTimeout.
	limit time.Time
	grace time.Duration
	rate  int64
	read  int64
	ended bool
}

// bound returns r with the deadline on its body, if it has one; requests without a body (WebSocket
// upgrades, GETs) are left alone: an upgraded WebSocket gets its read deadline from the OpAMP server's idle
// timeout. The deadline reader goes on a shallow copy of r: net/http looks at the original request's body
// after the handler, to see whether it may keep the connection, and must find its own reader there.
func (s *Server) bound(w http.ResponseWriter, r *http.Request) *http.Request {
	if r.Body == nil || r.Body == http.NoBody {
		return r
	}
	now := time.Now()
	b := &deadlineBody{
		body:  r.Body,
		rc:    http.NewResponseController(w),
		start: now,
		limit: now.Add(s.limits.BodyReadTimeout),
		grace: s.limits.BodyRateGrace,
		rate:  s.limits.MinBodyRate,
	}
	// Set at once, not at the first Read: a handler that never reads the body still has net/http drain it
	// before the response, and the drain must end at the deadline too.
	if err := b.rc.SetReadDeadline(b.deadline()); err != nil {
		return r
	}
	r = r.WithContext(r.Context())
	r.Body = b
	return r
}

func (b *deadlineBody) deadline() time.Time {
	// In two parts, so that no body size overflows the multiplication.
	earned := time.Duration(b.read/b.rate)*time.Second + time.Duration(b.read%b.rate)*time.Second/time.Duration(b.rate)
	d := b.start.Add(b.grace + earned)
	if d.After(b.limit) {
		return b.limit
	}
	return d
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	b.read += int64(n)
	switch {
	case b.ended:
	case errors.Is(err, io.EOF):
		b.ended = true
		_ = b.rc.SetReadDeadline(time.Time{})
	case err == nil && n > 0:
		_ = b.rc.SetReadDeadline(b.deadline())
	}
	return n, err
}

func (b *deadlineBody) Close() error { return b.body.Close() }
