package bot

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// Background work waits in a queue, not in a goroutine per piece: a flood
// of clicks costs memory for their closures only. Every piece runs once,
// at most backgroundWorkers at a time, and a panic stops only its own.
func TestBackgroundWorkQueues(t *testing.T) {
	h, _ := newHandlerHarness(t)
	b := h.bot
	// Every slot held: the workers wait for one with a piece each.
	for range cap(b.bgSlots) {
		b.bgSlots <- struct{}{}
	}
	before := runtime.NumGoroutine()
	const n = 500
	var (
		mu      sync.Mutex
		ran     = make(map[int]int)
		running atomic.Int64
		most    atomic.Int64
	)
	for i := range n {
		b.async(responseTimeout, func(ctx context.Context) {
			now := running.Add(1)
			defer running.Add(-1)
			for m := most.Load(); now > m && !most.CompareAndSwap(m, now); m = most.Load() {
			}
			mu.Lock()
			ran[i]++
			mu.Unlock()
			if i == 7 {
				panic("a bad click")
			}
		})
	}
	if grew := runtime.NumGoroutine() - before; grew > backgroundWorkers {
		t.Fatalf("%d goroutines more for %d pieces of work waiting; want at most %d workers", grew, n, backgroundWorkers)
	}
	for range cap(b.bgSlots) {
		<-b.bgSlots
	}
	if err := b.Drain(t.Context()); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if ran[i] != 1 {
			t.Fatalf("piece %d ran %d times", i, ran[i])
		}
	}
	if m := most.Load(); m > backgroundWorkers {
		t.Fatalf("%d pieces ran at once; want at most %d", m, backgroundWorkers)
	}
	// Workers stop once the queue is empty; later work starts them again.
	done := make(chan struct{})
	b.async(responseTimeout, func(context.Context) { close(done) })
	<-done
}
