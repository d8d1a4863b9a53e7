package operator

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestLeaderElectionTimingCheck(t *testing.T) {
	for _, tc := range []struct {
		name   string
		timing LeaderElectionTiming
		err    string
	}{
		{name: "defaults", timing: LeaderElectionTiming{}},
		{name: "controller-runtime's", timing: LeaderElectionTiming{15 * time.Second, 10 * time.Second, 2 * time.Second}},
		{name: "renew deadline not shorter than the lease", timing: LeaderElectionTiming{LeaseDuration: 6 * time.Second},
			err: "--leader-election-lease-duration (6s) must be longer than --leader-election-renew-deadline (6s)"},
		{name: "retry too close to the deadline", timing: LeaderElectionTiming{RetryPeriod: 5 * time.Second},
			err: "--leader-election-renew-deadline (6s) must be longer than 1.2 x --leader-election-retry-period (5s)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			err := tc.timing.Check()
			if tc.err == "" {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			g.Expect(err).To(MatchError(tc.err))
		})
	}
}
