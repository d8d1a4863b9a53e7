package endpoint

import (
	"strings"
	"testing"
)

func TestOpAMP(t *testing.T) {
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
			got, err := OpAMP(c.in)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("OpAMP(%q) error = %v, want %q", c.in, err, c.wantErr)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("OpAMP(%q) = %q, %v; want %q", c.in, got, err, c.want)
			}
		})
	}
}

func TestOwnMetrics(t *testing.T) {
	cases := []struct{ in, want, wantErr string }{
		{in: "http://linkmesh-operator.linkmesh-system.svc:4320", want: "http://linkmesh-operator.linkmesh-system.svc:4320/v1/metrics"},
		{in: "https://linkmesh.example.com/base/", want: "https://linkmesh.example.com/base/v1/metrics"},
		{in: "ws://x", wantErr: "scheme must be http or https"},
		{in: "https://", wantErr: "no host"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			got, err := OwnMetrics(c.in)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("OwnMetrics(%q) error = %v, want %q", c.in, err, c.wantErr)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("OwnMetrics(%q) = %q, %v; want %q", c.in, got, err, c.want)
			}
		})
	}
}
