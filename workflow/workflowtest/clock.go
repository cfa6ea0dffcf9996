// Package workflowtest holds test helpers for the workflow package and its
// implementations: a manual clock and the Store conformance suite.
package workflowtest

import (
	"context"
	"sync"
	"time"
)

// Clock is a workflow.Clock that moves only when told to, so deadlines and
// backoff are tested without sleeping.
type Clock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
	changed chan struct{} // closed and replaced whenever waiters change
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

// NewClock returns a clock set to t.
func NewClock(t time.Time) *Clock { return &Clock{now: t, changed: make(chan struct{})} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After returns a channel that receives once the clock reaches now+d.
func (c *Clock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	at := c.now.Add(d)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, waiter{at: at, ch: ch})
	c.signal()
	return ch
}

// Advance moves the clock forward and fires every timer now due.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advanceLocked(d)
}

func (c *Clock) advanceLocked(d time.Duration) {
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			kept = append(kept, w)
			continue
		}
		w.ch <- c.now
	}
	c.waiters = kept
	c.signal()
}

func (c *Clock) signal() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// Waiters counts the timers not yet fired.
func (c *Clock) Waiters() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

// WaitForTimer blocks until some timer is due at or before now+d (so an
// Advance(d) would fire it), or ctx ends.
func (c *Clock) WaitForTimer(ctx context.Context, d time.Duration) error {
	for {
		c.mu.Lock()
		limit := c.now.Add(d)
		for _, w := range c.waiters {
			if !w.at.After(limit) {
				c.mu.Unlock()
				return nil
			}
		}
		changed := c.changed
		c.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// WaitForWaiters blocks until at least n timers are pending (fired ones
// are not, cancelled ones still are), or ctx ends: a test learns so that
// a driver armed another timer, even one due when an earlier one is.
func (c *Clock) WaitForWaiters(ctx context.Context, n int) error {
	for {
		c.mu.Lock()
		ok, changed := len(c.waiters) >= n, c.changed
		c.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// WaitForTimerAt blocks until a timer is due exactly at t, or ctx ends.
// Unlike WaitForTimer it is not satisfied by another timer due earlier,
// such as a cancelled one still listed: its owner computed its wait from
// the clock before an Advance and would register it too late.
func (c *Clock) WaitForTimerAt(ctx context.Context, t time.Time) error {
	for {
		c.mu.Lock()
		for _, w := range c.waiters {
			if w.at.Equal(t) {
				c.mu.Unlock()
				return nil
			}
		}
		changed := c.changed
		c.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// AdvanceToNext moves the clock to the earliest pending timer if it is due
// within limit, firing it, and reports whether it did.
func (c *Clock) AdvanceToNext(limit time.Duration) bool {
	c.mu.Lock()
	var next time.Time
	for _, w := range c.waiters {
		if next.IsZero() || w.at.Before(next) {
			next = w.at
		}
	}
	ok := !next.IsZero() && !next.After(c.now.Add(limit))
	if ok {
		// Under the same lock as the choice: an Advance in between must not
		// make this one move the clock back.
		c.advanceLocked(max(next.Sub(c.now), 0))
	}
	c.mu.Unlock()
	return ok
}

// AutoAdvance fires every timer due within limit as soon as it is set, until
// ctx ends: backoff then passes at once while gate deadlines (further away)
// do not.
func (c *Clock) AutoAdvance(ctx context.Context, limit time.Duration) {
	for ctx.Err() == nil {
		if err := c.WaitForTimer(ctx, limit); err != nil {
			return
		}
		c.AdvanceToNext(limit)
	}
}
