package bot

import (
	"context"
	"net/http"
	"net/url"
	"runtime"
	"strings"
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

// A click is acknowledged before its payload is decoded: the decoding
// happens in the background, with the decision, and a payload that does not
// decode is logged there. An interaction of another type is decoded on the
// request path, where its answer may depend on it.
func TestClickDecodedInBackground(t *testing.T) {
	h, eng := newHandlerHarness(t)
	b := h.bot
	for range cap(b.bgSlots) {
		b.bgSlots <- struct{}{}
	}
	click := url.Values{"payload": {`{"type":"block_actions","user":{"id":"U2"},"actions":[{"action_id":"approve","value":"1|authentik|n"}`}}
	status, out := h.post("/slack/interactions", click)
	if status != http.StatusOK || strings.TrimSpace(out) != "" {
		t.Fatalf("click acknowledged %d %q; want an empty 200", status, out)
	}
	if strings.Contains(h.logBuf.String(), "unreadable interaction payload") {
		t.Fatal("the click's payload was decoded before the acknowledgement")
	}
	view := url.Values{"payload": {`{"type":"view_submission","view":`}}
	if status, _ := h.post("/slack/interactions", view); status != http.StatusOK {
		t.Fatalf("submission acknowledged %d", status)
	}
	if n := strings.Count(h.logBuf.String(), "unreadable interaction payload"); n != 1 {
		t.Fatalf("%d warnings after the submission; want its own, on the request path", n)
	}
	for range cap(b.bgSlots) {
		<-b.bgSlots
	}
	if err := b.Drain(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(h.logBuf.String(), "unreadable interaction payload"); n != 2 {
		t.Fatalf("%d warnings once background work ran; want the click's too:\n%s", n, h.logBuf.String())
	}
	if calls := eng.Calls(); len(calls) != 0 {
		t.Fatalf("the engine was called for payloads that do not decode: %v", calls)
	}
}
