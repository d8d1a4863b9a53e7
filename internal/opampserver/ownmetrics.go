package opampserver

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"

	"github.com/open-telemetry/opamp-go/protobufs"
	corev1 "k8s.io/api/core/v1"

	"github.com/linkmesh/linkmesh-operator/api/v1alpha1"
	"github.com/linkmesh/linkmesh-operator/internal/credential"
	"github.com/linkmesh/linkmesh-operator/internal/fleet"
	"github.com/linkmesh/linkmesh-operator/internal/naming"
)

// ErrUnauthorized is every reason AuthenticateOwnMetrics refuses a request; it does not say which.
var ErrUnauthorized = errUnauthorized

// hostOwnMetricsLabel separates the derived own-metrics token from any other use of the enrollment token.
const hostOwnMetricsLabel = "linkmesh.io/own-metrics/v1"

// HostOwnMetricsToken is the own-metrics token of the host that joins with enrollmentToken. It is derived,
// not stored: an EnrollmentToken admits one host, so the token is per host; it is an HMAC, so a collector
// config that leaks it does not leak the enrollment token, which is also the host's OpAMP credential.
func HostOwnMetricsToken(enrollmentToken string) string {
	if enrollmentToken == "" {
		return ""
	}
	mac := hmac.New(sha256.New, []byte(enrollmentToken))
	mac.Write([]byte(hostOwnMetricsLabel))
	return credential.PrefixOwnMetrics + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// ownMetricsDigests are the index entries of a Secret's own-metrics tokens.
func ownMetricsDigests(s *corev1.Secret) []string {
	var out []string
	if v := s.Data[naming.OwnMetricsTokenKey]; len(v) > 0 {
		out = append(out, digest(string(v)))
	}
	if v := s.Data[v1alpha1.TokenSecretKey]; len(v) > 0 {
		out = append(out, digest(HostOwnMetricsToken(string(v))))
	}
	return out
}

// MetricsPoster is who presented an own-metrics token: the group, and for a host the EnrollmentToken, whose
// agents it may post for.
type MetricsPoster struct {
	// Membership is matched against the agent's membership in the fleet.
	Membership fleet.Membership
	// Fingerprint names the token in logs.
	Fingerprint string
}

// AuthenticateOwnMetrics maps a /v1/metrics request's bearer token to its poster, from the cache only. An
// OpAMP credential is not an own-metrics token and is refused.
func (s *Server) AuthenticateOwnMetrics(ctx context.Context, r *http.Request) (*MetricsPoster, error) {
	token, secrets, err := s.requestCandidates(ctx, r)
	if err != nil {
		return nil, err
	}
	for i := range secrets {
		sec := &secrets[i]
		var (
			p   *principal
			err error
		)
		switch {
		case credential.Equal(token, string(sec.Data[naming.OwnMetricsTokenKey])):
			p, err = s.collectorPrincipal(ctx, sec, token)
		case credential.Equal(token, HostOwnMetricsToken(string(sec.Data[v1alpha1.TokenSecretKey]))):
			p, err = s.hostPrincipal(ctx, sec, token)
		default:
			continue
		}
		if err != nil {
			return nil, err
		}
		return &MetricsPoster{Membership: p.membership, Fingerprint: p.fingerprint}, nil
	}
	return nil, errUnauthorized
}

// offerOwnMetrics adds the own_metrics destination to resp when the fleet says it is due, or an empty one
// that withdraws it when spec.supervisor.ownMetrics is false. The supervisor writes the destination into the
// collector's service.telemetry and keeps it across restarts; an empty one removes it.
func (c *session) offerOwnMetrics(uid string, link fleet.Link, resp *protobufs.ServerToAgent) {
	endpoint, token := c.server.ownMetricsURL, c.principal.ownMetricsToken
	if endpoint == "" || token == "" || resp.ErrorResponse != nil {
		return
	}
	var offer *protobufs.ConnectionSettingsOffers
	switch c.server.fleet.OfferOwnMetrics(uid, link, uint64(protobufs.AgentCapabilities_AgentCapabilities_ReportsOwnMetrics)) {
	case fleet.OwnMetricsOffer:
		offer = ownMetricsOffer(endpoint, token)
	case fleet.OwnMetricsWithdraw:
		offer = ownMetricsOffer("", "")
	default:
		return
	}
	resp.Capabilities |= uint64(protobufs.ServerCapabilities_ServerCapabilities_OffersConnectionSettings)
	resp.ConnectionSettings = offer
}

// ownMetricsOffer is the destination, or with an empty endpoint the withdrawal of any earlier one.
func ownMetricsOffer(endpoint, token string) *protobufs.ConnectionSettingsOffers {
	h := sha256.New()
	h.Write([]byte(endpoint))
	h.Write([]byte{0})
	h.Write([]byte(token))
	if endpoint == "" {
		return &protobufs.ConnectionSettingsOffers{Hash: h.Sum(nil), OwnMetrics: &protobufs.TelemetryConnectionSettings{}}
	}
	return &protobufs.ConnectionSettingsOffers{
		Hash: h.Sum(nil),
		OwnMetrics: &protobufs.TelemetryConnectionSettings{
			DestinationEndpoint: endpoint,
			Headers: &protobufs.Headers{Headers: []*protobufs.Header{
				{Key: "Authorization", Value: "Bearer " + token},
			}},
		},
	}
}
