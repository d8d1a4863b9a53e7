package opampserver

import (
	"crypto/sha256"

	"github.com/open-telemetry/opamp-go/protobufs"

	"github.com/linkmesh/linkmesh-operator/internal/fleet"
)

// offerOwnMetrics adds the own_metrics destination to resp when the fleet says it is due, or an empty one
// that withdraws it when spec.supervisor.ownMetrics is false. The supervisor writes the destination into the
// collector's service.telemetry and keeps it across restarts; an empty one removes it.
func (c *session) offerOwnMetrics(uid string, link fleet.Link, resp *protobufs.ServerToAgent) {
	endpoint, token := c.server.ownMetricsURL, c.principal.OwnMetricsToken
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
