package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// The bench's children (control plane, operators, load generators, floor) are test/framework/process
// children; this file has what the bench waits with.

// errTimeout marks a wait that ran out of time.
var errTimeout = errors.New("timed out")

// waitUntil calls check whenever wake fires (and at least every 100 ms) until it returns true, ctx ends
// or timeout passes; the error then says what did not happen, with what describe says about the state.
func waitUntil(ctx context.Context, what string, timeout time.Duration, wake func() <-chan struct{}, check func() bool, describe func() string) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		w := wake()
		if check() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (%s)", what, context.Cause(ctx), describe())
		case <-deadline.C:
			return fmt.Errorf("%s: %w after %s (%s)", what, errTimeout, timeout, describe())
		case <-w:
		case <-tick.C:
		}
	}
}

// broadcast: Wait returns a channel that closes at the next Notify.
type broadcast struct {
	mu sync.Mutex
	ch chan struct{}
}

func newBroadcast() *broadcast { return &broadcast{ch: make(chan struct{})} }

func (s *broadcast) Wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ch
}

func (s *broadcast) Notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.ch)
	s.ch = make(chan struct{})
}
