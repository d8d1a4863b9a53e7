// Package otlptest is the traffic side of the end-to-end suites: a collector config with one OTLP/HTTP
// traces pipeline, a span to send into it, and a sink that counts what the collector exports.
package otlptest

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// Sink is an OTLP/HTTP endpoint on 127.0.0.1 that counts the trace exports it receives.
type Sink struct {
	*httptest.Server
	traces atomic.Int32
}

// NewSink starts a Sink, closed when the test ends.
func NewSink(t *testing.T) *Sink {
	s := &Sink{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/traces" {
			s.traces.Add(1)
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(s.Close)
	return s
}

// Traces is the number of trace exports received.
func (s *Sink) Traces() int32 { return s.traces.Load() }

// Pipeline is a collector config that receives OTLP/HTTP on 127.0.0.1:port and exports traces to sinkURL;
// extra names one more exporter (with default settings) for the pipeline, or is empty.
func Pipeline(port int, sinkURL, extra string) string {
	return fmt.Sprintf(`# e2e pipeline
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:%d
exporters:
  otlp_http:
    endpoint: %s
    compression: none
    sending_queue:
      enabled: false
    retry_on_failure:
      enabled: false
%sservice:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlp_http%s]
`, port, sinkURL, extraExporter(extra), extraRef(extra))
}

func extraExporter(name string) string {
	if name == "" {
		return ""
	}
	return "  " + name + ":\n"
}

func extraRef(name string) string {
	if name == "" {
		return ""
	}
	return ", " + name
}

const span = `{"resourceSpans":[{"resource":{},"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"e2e","kind":1,"startTimeUnixNano":"1","endTimeUnixNano":"2"}]}]}]}`

// SendSpan posts one span to the collector's OTLP/HTTP receiver on 127.0.0.1:port.
func SendSpan(port int) error {
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/v1/traces", port), "application/json", bytes.NewBufferString(span))
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("receiver answered %s", resp.Status)
	}
	return nil
}
