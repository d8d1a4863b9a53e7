// Package otlpintake is the operator's OTLP/HTTP metrics receiver at /v1/metrics. Collectors push their
// own metrics there, with the bearer token the OpAMP server offered them; the intake decodes them with
// the collector's pdata and feeds the counters into the fleet, which turns them into throughput.
package otlpintake

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"

	"github.com/go-logr/logr"
	"github.com/google/uuid"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/linkmesh/linkmesh-operator/internal/bounded"
	"github.com/linkmesh/linkmesh-operator/internal/credential"
	"github.com/linkmesh/linkmesh-operator/internal/endpoint"
	"github.com/linkmesh/linkmesh-operator/internal/fleet"
)

// Path is where the intake is mounted on the listener.
const Path = endpoint.MetricsPath

// DefaultMaxBodySize bounds a request before and after gzip. A collector's own metrics are a few hundred
// data points, tens of KiB.
const DefaultMaxBodySize = 4 << 20

// Content types of OTLP/HTTP.
const (
	contentTypeProtobuf = "application/x-protobuf"
	contentTypeJSON     = "application/json"
)

// Authenticator maps a request's bearer to whom it may post for; *credential.Authority is one.
type Authenticator interface {
	Authenticate(ctx context.Context, r *http.Request, use credential.Use) (*credential.Principal, error)
}

// Recorder takes the decoded samples of one agent; fleet.Registry is one.
type Recorder interface {
	RecordOwnMetrics(scope credential.Membership, uid string, samples []fleet.Sample) error
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
	poster, err := h.auth.Authenticate(r.Context(), r, credential.UseOwnMetrics)
	if credential.Refuse(w, h.log, err, "an own-metrics request") {
		return
	}
	mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mediaType != contentTypeProtobuf && mediaType != contentTypeJSON {
		w.WriteHeader(http.StatusUnsupportedMediaType)
		return
	}
	body, status := bounded.ReadBody(w, r, h.maxSize)
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
		h.log.V(1).Info("Rejected own metrics", "collector", poster.Collector.String(),
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

// record feeds each resource's samples to the fleet as the agent its service.instance.id names, and
// counts the data points it could not take.
func (h *Handler) record(poster *credential.Principal, req pmetricotlp.ExportRequest) (int64, string) {
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
