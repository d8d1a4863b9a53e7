package otlpintake

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-logr/logr"
	"github.com/google/uuid"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"k8s.io/apimachinery/pkg/types"

	"github.com/linkmesh/linkmesh-operator/internal/credential"
	"github.com/linkmesh/linkmesh-operator/internal/fleet"
)

// anyPoster authenticates every request as a pod of one ManagedCollector.
type anyPoster struct{}

func (anyPoster) Authenticate(context.Context, *http.Request, credential.Use) (*credential.Principal, error) {
	return &credential.Principal{Membership: credential.Membership{
		Collector: types.NamespacedName{Namespace: "ns", Name: "hosts"}, Source: credential.SourcePod,
	}}, nil
}

// countingFleet takes every agent's samples and counts the calls.
type countingFleet struct{ calls int }

func (f *countingFleet) RecordOwnMetrics(_ credential.Membership, uid string, _ []fleet.Sample) error {
	if _, err := uuid.Parse(uid); err != nil {
		panic("RecordOwnMetrics got instance " + uid + ", not a UUID")
	}
	f.calls++
	return nil
}

// FuzzExportRequest posts arbitrary bytes to the intake as an OTLP/HTTP metrics export, protobuf or JSON,
// and checks the answer a collector gets: 200 exactly when the request decodes, in the request's encoding,
// with no more points rejected than the request had; the fleet hears once per resource that names a
// collector, and each sample comes from one counter point of one component. Seeds:
// testdata/fuzz/FuzzExportRequest and the requests below.
func FuzzExportRequest(f *testing.F) {
	for _, json := range []bool{false, true} {
		req := pmetricotlp.NewExportRequestFromMetrics(ownMetrics())
		var b []byte
		var err error
		if json {
			b, err = req.MarshalJSON()
		} else {
			b, err = req.MarshalProto()
		}
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, json)
		f.Add([]byte{}, json)
	}

	f.Fuzz(func(t *testing.T, body []byte, json bool) {
		rec := &countingFleet{}
		h, err := New(Options{Auth: anyPoster{}, Fleet: rec, Logger: logr.Discard()})
		if err != nil {
			t.Fatal(err)
		}
		mediaType := contentTypeProtobuf
		if json {
			mediaType = contentTypeJSON
		}
		r := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body))
		r.Header.Set("Content-Type", mediaType)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)

		req := pmetricotlp.NewExportRequest()
		var decodeErr error
		if json {
			decodeErr = req.UnmarshalJSON(body)
		} else {
			decodeErr = req.UnmarshalProto(body)
		}
		if got := w.Header().Get("Content-Type"); got != mediaType {
			t.Fatalf("answered in %q to a request in %q", got, mediaType)
		}
		if decodeErr != nil {
			if w.Code != http.StatusBadRequest {
				t.Fatalf("an undecodable request got %d, want 400", w.Code)
			}
			return
		}
		if w.Code != http.StatusOK {
			t.Fatalf("a decodable request got %d, want 200", w.Code)
		}
		resp := pmetricotlp.NewExportResponse()
		if json {
			err = resp.UnmarshalJSON(w.Body.Bytes())
		} else {
			err = resp.UnmarshalProto(w.Body.Bytes())
		}
		if err != nil {
			t.Fatalf("the answer does not decode: %v", err)
		}

		total, collectors := 0, 0
		rms := req.Metrics().ResourceMetrics()
		for i := 0; i < rms.Len(); i++ {
			rm := rms.At(i)
			points := dataPoints(rm)
			total += points
			if _, ok := instanceID(rm.Resource().Attributes()); ok {
				collectors++
			}
			samples := Samples(rm)
			if len(samples) > points {
				t.Fatalf("%d samples from a resource of %d points", len(samples), points)
			}
			for _, s := range samples {
				if s.Component == "" || s.Time.IsZero() || s.Kind == "" || s.Outcome == "" {
					t.Fatalf("sample without component, time, kind or outcome: %+v", s)
				}
			}
		}
		if rejected := resp.PartialSuccess().RejectedDataPoints(); rejected < 0 || rejected > int64(total) {
			t.Fatalf("%d points rejected of %d", rejected, total)
		}
		if rec.calls != collectors {
			t.Fatalf("the fleet heard %d times for %d resources naming a collector", rec.calls, collectors)
		}
	})
}

// ownMetrics is what a collector exports about itself: a receiver and an exporter counter.
func ownMetrics() pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.instance.id", "0190c8a2-0000-7000-8000-000000000001")
	ms := rm.ScopeMetrics().AppendEmpty().Metrics()
	for name, attr := range map[string]string{
		"otelcol_receiver_accepted_spans": "receiver", "otelcol_exporter_sent_spans": "exporter",
	} {
		m := ms.AppendEmpty()
		m.SetName(name)
		sum := m.SetEmptySum()
		sum.SetIsMonotonic(true)
		sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
		p := sum.DataPoints().AppendEmpty()
		p.Attributes().PutStr(attr, "otlp")
		p.SetIntValue(42)
		p.SetTimestamp(pcommon.Timestamp(1_700_000_000_000_000_000))
	}
	return md
}
