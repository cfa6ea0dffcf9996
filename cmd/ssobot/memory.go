package main

import (
	"context"
	"runtime/debug"
	"time"
)

// idleRelease is how long the bot must have been idle before it returns its
// free memory to the system.
const idleRelease = 5 * time.Second

// releaseWhenIdle returns the memory a burst of work left free to the system
// once activity (a counter that moves with every request and write) has not
// moved for a full period. Go's own scavenger does so too, but over minutes
// and only down to a margin above the heap's last goal; a bot is idle most of
// the time, and between bursts it should be as small as its live data.
func releaseWhenIdle(ctx context.Context, period time.Duration, activity func() uint64) {
	t := time.NewTicker(period)
	defer t.Stop()
	releaseOnIdleTicks(ctx, t.C, activity, debug.FreeOSMemory)
}

// releaseOnIdleTicks calls release once per idle spell: at the first tick
// after which activity has not moved since the tick before.
func releaseOnIdleTicks(ctx context.Context, ticks <-chan time.Time, activity func() uint64, release func()) {
	last, released := activity(), false
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticks:
		}
		if now := activity(); now != last {
			last, released = now, false
			continue
		}
		if !released {
			release()
			released = true
		}
	}
}
