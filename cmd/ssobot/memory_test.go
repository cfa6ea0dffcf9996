package main

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestReleaseOnIdleTicks(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	ticks := make(chan time.Time)
	var activity atomic.Uint64
	released := make(chan struct{}, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		releaseOnIdleTicks(ctx, ticks, activity.Load, func() { released <- struct{}{} })
	}()
	tick := func() { ticks <- time.Time{} }
	count := func() int {
		// A tick is taken only once the previous one is handled: sending
		// one more makes the count of the previous ones final.
		tick()
		return len(released)
	}

	activity.Add(1)
	tick() // activity moved: no release
	tick() // idle for a period: release
	tick() // still idle: released already
	if n := count(); n != 1 {
		t.Fatalf("%d releases after one idle spell, want 1", n)
	}
	<-released
	activity.Add(1)
	tick() // busy again
	tick() // idle again: release
	if n := count(); n != 1 {
		t.Fatalf("%d releases after the second idle spell, want 1", n)
	}
	cancel()
	<-done
}

// What sits in a sync.Pool is let go too: the pools' buffers were a few MB
// of an idle bot's heap.
func TestReleaseFreeMemoryDropsPooledBuffers(t *testing.T) {
	made := 0
	pool := sync.Pool{New: func() any { made++; return new([64 << 10]byte) }}
	pool.Put(pool.Get())
	if made != 1 {
		t.Fatalf("%d buffers made, want 1", made)
	}
	releaseFreeMemory()
	pool.Get()
	if made != 2 {
		t.Fatalf("the pooled buffer outlived the release (%d made, want 2)", made)
	}
}
