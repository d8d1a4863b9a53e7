package operator

import (
	"strings"
	"testing"
)

func TestOpAMPEndpoint(t *testing.T) {
	cases := []struct{ in, want, wantErr string }{
		{in: "http://linkmesh-operator.linkmesh-system.svc:4320", want: "ws://linkmesh-operator.linkmesh-system.svc:4320/v1/opamp"},
		{in: "https://linkmesh.example.com", want: "wss://linkmesh.example.com/v1/opamp"},
		{in: "https://linkmesh.example.com/base/", want: "wss://linkmesh.example.com/base/v1/opamp"},
		{in: "ftp://x", wantErr: "scheme must be http or https"},
		{in: "http://", wantErr: "no host"},
		{in: "linkmesh.example.com", wantErr: "scheme must be http or https"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			got, err := OpAMPEndpoint(c.in)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("OpAMPEndpoint(%q) error = %v, want %q", c.in, err, c.wantErr)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("OpAMPEndpoint(%q) = %q, %v; want %q", c.in, got, err, c.want)
			}
		})
	}
}
