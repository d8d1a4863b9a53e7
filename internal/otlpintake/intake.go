// Package otlpintake is the operator's OTLP/HTTP metrics receiver at /v1/metrics. Collectors push their
// own metrics there, with the bearer token the OpAMP server offered them; the intake decodes them with
// the collector's pdata and feeds the counters into the fleet, which turns them into throughput.
package otlpintake

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/go-logr/logr"
	"github.com/google/uuid"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/linkmesh/linkmesh-operator/internal/fleet"
	"github.com/linkmesh/linkmesh-operator/internal/opampserver"
)

// Path is where the intake is mounted on the listener.
const Path = "/v1/metrics"

// DefaultMaxBodySize bounds a request before and after gzip. A collector's own metrics are a few hundred
// data points, tens of KiB.
const DefaultMaxBodySize = 4 << 20

// Content types of OTLP/HTTP.
const (
	contentTypeProtobuf = "application/x-protobuf"
	contentTypeJSON     = "application/json"
)

// Authenticator maps a request's bearer to whom it may post for; opampserver.Server is one.
type Authenticator interface {
	AuthenticateOwnMetrics(ctx context.Context, r *http.Request) (*opampserver.MetricsPoster, error)
}

// Recorder takes the decoded samples of one agent; fleet.Registry is one.
type Recorder interface {
	RecordOwnMetrics(scope fleet.Membership, uid string, samples []fleet.Sample) error
}

// Options configure a Handler.
type Options struct {
	// Auth authenticates requests; required.
	Auth Authenticator
	// Fleet receives the samples; required.
	Fleet Recorder
	// MaxBodySize defaults to DefaultMaxBodySize.
	MaxBodySize int64
	// Logger defaults to the controller-runtime logger named "otlp".
	Logger logr.Logger
}

// Handler serves OTLP/HTTP metrics export requests.
type Handler struct {
	auth    Authenticator
	fleet   Recorder
	maxSize int64
	log     logr.Logger
}

// New returns the /v1/metrics handler.
func New(o Options) (*Handler, error) {
	if o.Auth == nil || o.Fleet == nil {
		return nil, errors.New("otlpintake: Auth and Fleet are required")
	}
	if o.MaxBodySize <= 0 {
		o.MaxBodySize = DefaultMaxBodySize
	}
	if o.Logger.GetSink() == nil {
		o.Logger = ctrl.Log.WithName("otlp")
	}
	return &Handler{auth: o.Auth, fleet: o.Fleet, maxSize: o.MaxBodySize, log: o.Logger}, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	poster, err := h.auth.AuthenticateOwnMetrics(r.Context(), r)
	if opampserver.RefuseUnauthenticated(w, h.log, err, "an own-metrics request") {
		return
	}
	mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mediaType != contentTypeProtobuf && mediaType != contentTypeJSON {
		w.WriteHeader(http.StatusUnsupportedMediaType)
		return
	}
	body, status := h.readBody(w, r)
	if status != 0 {
		writeStatus(w, mediaType, status, http.StatusText(status))
		return
	}
	req := pmetricotlp.NewExportRequest()
	if mediaType == contentTypeJSON {
		err = req.UnmarshalJSON(body)
	} else {
		err = req.UnmarshalProto(body)
	}
	if err != nil {
		writeStatus(w, mediaType, http.StatusBadRequest, "cannot decode the export request")
		return
	}

	rejected, reason := h.record(poster, req)
	resp := pmetricotlp.NewExportResponse()
	if rejected > 0 {
		resp.PartialSuccess().SetRejectedDataPoints(rejected)
		resp.PartialSuccess().SetErrorMessage(reason)
		h.log.V(1).Info("Rejected own metrics", "collector", poster.Membership.Collector.String(),
			"credential", poster.Fingerprint, "dataPoints", rejected, "reason", reason)
	}
	var out []byte
	if mediaType == contentTypeJSON {
		out, err = resp.MarshalJSON()
	} else {
		out, err = resp.MarshalProto()
	}
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", mediaType)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
}

// readBody reads the body within maxSize, before and after gzip; a non-zero status is the error answer.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, int) {
	if r.ContentLength > h.maxSize {
		return nil, http.StatusRequestEntityTooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxSize))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, http.StatusRequestEntityTooLarge
		}
		return nil, http.StatusBadRequest
	}
	switch r.Header.Get("Content-Encoding") {
	case "", "identity":
		return body, 0
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, http.StatusBadRequest
		}
		body, err = io.ReadAll(io.LimitReader(zr, h.maxSize+1))
		if err != nil {
			return nil, http.StatusBadRequest
		}
		if int64(len(body)) > h.maxSize {
			return nil, http.StatusRequestEntityTooLarge
		}
		return body, 0
	default:
		return nil, http.StatusUnsupportedMediaType
	}
}

// record feeds each resource's samples to the fleet as the agent its service.instance.id names, and
// counts the data points it could not take.
func (h *Handler) record(poster *opampserver.MetricsPoster, req pmetricotlp.ExportRequest) (int64, string) {
	var rejected int64
	reason := ""
	rms := req.Metrics().ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		rm := rms.At(i)
		n := int64(dataPoints(rm))
		id, ok := instanceID(rm.Resource().Attributes())
		if !ok {
			rejected += n
			reason = "resource has no service.instance.id of a collector"
			continue
		}
		switch err := h.fleet.RecordOwnMetrics(poster.Membership, id.String(), Samples(rm)); {
		case errors.Is(err, fleet.ErrOwnMetricsDisabled):
			rejected += n
			reason = "own metrics are disabled for this ManagedCollector (spec.supervisor.ownMetrics)"
		case err != nil:
			rejected += n
			reason = fmt.Sprintf("instance %s is not a collector this token may report for on this server", id)
		}
	}
	return rejected, reason
}

// instanceID is the resource's service.instance.id: the supervisor sets it to the agent's instance UID.
func instanceID(attrs pcommon.Map) (uuid.UUID, bool) {
	v, ok := attrs.Get("service.instance.id")
	if !ok || v.Type() != pcommon.ValueTypeStr {
		return uuid.Nil, false
	}
	id, err := uuid.Parse(v.Str())
	return id, err == nil
}

// writeStatus answers an error with a google.rpc.Status in the request's encoding, as OTLP/HTTP asks.
func writeStatus(w http.ResponseWriter, mediaType string, status int, msg string) {
	st := &rpcstatus.Status{Code: 3, Message: msg} // INVALID_ARGUMENT
	if status == http.StatusRequestEntityTooLarge {
		st.Code = 8 // RESOURCE_EXHAUSTED
	}
	var body []byte
	if mediaType == contentTypeJSON {
		body, _ = protojson.Marshal(st)
	} else {
		body, _ = proto.Marshal(st)
	}
	w.Header().Set("Content-Type", mediaType)
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// Endpoint is the /v1/metrics URL under the operator's external base URL, offered to collectors.
func Endpoint(external string) (string, error) {
	u, err := url.Parse(external)
	if err != nil {
		return "", fmt.Errorf("external URL %q: %w", external, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("external URL %q: must be an http or https URL with a host", external)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + Path
	return u.String(), nil
}
