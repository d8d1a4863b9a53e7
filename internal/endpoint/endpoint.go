// Package endpoint is where collectors and hosts reach the operator: the paths of its listener and the URLs
// built from the external base URL (--external-url) that supervisor.yaml, the own_metrics offer and the
// installer carry.
package endpoint

import (
	"fmt"
	"net/url"
	"strings"
)

// Paths on the operator's listener.
const (
	// OpAMPPath is the OpAMP endpoint, WebSocket or plain HTTP.
	OpAMPPath = "/v1/opamp"
	// MetricsPath is the OTLP/HTTP intake of the collectors' own metrics.
	MetricsPath = "/v1/metrics"
)

// OpAMP is the ws:// or wss:// URL of OpAMPPath under base, an http(s) URL: wss:// when base is https://.
func OpAMP(base string) (string, error) {
	u, err := parse(base)
	if err != nil {
		return "", err
	}
	u.Scheme = map[string]string{"http": "ws", "https": "wss"}[u.Scheme]
	u.Path = strings.TrimSuffix(u.Path, "/") + OpAMPPath
	return u.String(), nil
}

// OwnMetrics is the http(s) URL of MetricsPath under base.
func OwnMetrics(base string) (string, error) {
	u, err := parse(base)
	if err != nil {
		return "", err
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + MetricsPath
	return u.String(), nil
}

func parse(base string) (*url.URL, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("external URL %q: %w", base, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("external URL %q: scheme must be http or https", base)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("external URL %q: no host", base)
	}
	return u, nil
}
