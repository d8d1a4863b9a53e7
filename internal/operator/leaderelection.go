package operator

import (
	"fmt"
	"time"

	"k8s.io/client-go/tools/leaderelection"
)

// LeaderElectionTiming is the leader election Lease's timing (--leader-election-lease-duration,
// --leader-election-renew-deadline, --leader-election-retry-period).
type LeaderElectionTiming struct {
	// LeaseDuration is how long the other replicas wait, from the last renewal they saw, before one takes
	// over from a leader that stopped renewing.
	LeaseDuration time.Duration
	// RenewDeadline is how long the leader keeps trying to renew before it gives up leading and the
	// process stops (its collectors then reconnect to the other replicas).
	RenewDeadline time.Duration
	// RetryPeriod is how often the leader renews and the others look at the Lease.
	RetryPeriod time.Duration
}

// LeaderElectionDefaults are shorter than controller-runtime's 15 s, 10 s and 2 s, under which a killed
// leader left the replicas for 15 to 19 s without one to write status: with these a survivor leads within
// about 10 s, before a killed replica's share lapses (replica.DefaultLeaseDuration), so status is right
// again within a few seconds of that. The cost is one Lease write a second, whatever the fleet's size.
var LeaderElectionDefaults = LeaderElectionTiming{
	LeaseDuration: 8 * time.Second,
	RenewDeadline: 6 * time.Second,
	RetryPeriod:   time.Second,
}

// withDefaults fills what is unset from LeaderElectionDefaults.
func (t LeaderElectionTiming) withDefaults() LeaderElectionTiming {
	if t.LeaseDuration <= 0 {
		t.LeaseDuration = LeaderElectionDefaults.LeaseDuration
	}
	if t.RenewDeadline <= 0 {
		t.RenewDeadline = LeaderElectionDefaults.RenewDeadline
	}
	if t.RetryPeriod <= 0 {
		t.RetryPeriod = LeaderElectionDefaults.RetryPeriod
	}
	return t
}

// Check refuses a timing client-go's leader election would refuse when it starts, with the flags' names.
func (t LeaderElectionTiming) Check() error {
	t = t.withDefaults()
	switch {
	case t.LeaseDuration <= t.RenewDeadline:
		return fmt.Errorf("--leader-election-lease-duration (%s) must be longer than --leader-election-renew-deadline (%s)",
			t.LeaseDuration, t.RenewDeadline)
	case float64(t.RenewDeadline) <= leaderelection.JitterFactor*float64(t.RetryPeriod):
		return fmt.Errorf("--leader-election-renew-deadline (%s) must be longer than %.1f x --leader-election-retry-period (%s)",
			t.RenewDeadline, leaderelection.JitterFactor, t.RetryPeriod)
	}
	return nil
}
