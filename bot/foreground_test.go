package bot

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestForegroundNil(t *testing.T) {
	var f *Foreground
	f.Begin()()
	if f.Active() != 0 || f.Transport(http.DefaultTransport) != http.DefaultTransport {
		t.Error("a nil Foreground must change nothing")
	}
}

func TestForegroundCounts(t *testing.T) {
	f := NewForeground()
	end, end2 := f.Begin(), f.Begin()
	if f.Active() != 2 {
		t.Fatalf("active = %d, want 2", f.Active())
	}
	end()
	end() // a second call of the same end changes nothing
	if f.Active() != 1 {
		t.Fatalf("active = %d after one request ended (twice), want 1", f.Active())
	}
	end2()
	if f.Active() != 0 {
		t.Fatalf("active = %d, want 0", f.Active())
	}
	<-f.idle // signalled once no request has been in flight for quietFor
}

// The burst is over only once no request has been in flight for quietFor:
// a request beginning within it keeps background work waiting.
func TestForegroundQuietPeriod(t *testing.T) {
	clock := newTestClock()
	f := NewForeground()
	f.quietFor, f.clock = time.Hour, clock
	f.Begin()()
	if isClosed(f.idle) {
		t.Fatal("idle right after the last request ended, want it after the quiet period")
	}
	end := f.Begin()
	clock.Advance(2 * time.Hour) // the quiet period after the first request is over
	f.settle()
	if isClosed(f.idle) {
		t.Fatal("idle while a request is in flight")
	}
	end()
	f.settle() // fires early: the last end was just now
	if isClosed(f.idle) {
		t.Fatal("idle before the quiet period after the last request")
	}
	clock.Advance(f.quietFor - time.Second)
	f.settle()
	if isClosed(f.idle) {
		t.Fatal("idle a second before the quiet period after the last request was over")
	}
	clock.Advance(time.Second)
	f.settle()
	if !isClosed(f.idle) {
		t.Fatal("not idle once the quiet period has passed")
	}
	f.Begin()
	if isClosed(f.idle) {
		t.Fatal("a new request after the burst ended did not start another")
	}
}

// While a request is being answered, background calls go one at a time;
// once none is, they go at once.
func TestForegroundTransportOneAtATime(t *testing.T) {
	var inside, most atomic.Int64
	entered := make(chan struct{}, 4)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inside.Add(1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		entered <- struct{}{}
		<-release
		inside.Add(-1)
	}))
	defer srv.Close()

	f := NewForeground()
	client := &http.Client{Transport: f.Transport(http.DefaultTransport)}
	get := func(wg *sync.WaitGroup) {
		wg.Go(func() {
			resp, err := client.Get(srv.URL)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
		})
	}

	end := f.Begin()
	var wg sync.WaitGroup
	get(&wg)
	<-entered
	get(&wg)
	for f.waiting.Load() != 1 {
		runtime.Gosched()
	}
	if inside.Load() != 1 {
		t.Fatalf("%d calls inside while a request is answered, want 1", inside.Load())
	}
	release <- struct{}{}
	<-entered // the second goes once the first is done
	release <- struct{}{}
	wg.Wait()
	if most.Load() != 1 {
		t.Errorf("at most %d calls at once while a request was answered, want 1", most.Load())
	}

	// A call waiting for the slot goes as soon as no request is answered.
	get(&wg)
	<-entered
	get(&wg)
	for f.waiting.Load() != 1 {
		runtime.Gosched()
	}
	end()
	<-entered
	if inside.Load() != 2 {
		t.Errorf("%d calls inside once idle, want 2", inside.Load())
	}
	close(release)
	wg.Wait()
}

// Only requests with a valid signature count: an unsigned or slow client
// cannot hold background work back.
func TestForegroundCountsVerifiedRequests(t *testing.T) {
	f := NewForeground()
	h := newHarness(t, newFakeEngine(newTestClock()), func(c *Config) { c.Foreground = f })
	req, err := http.NewRequest(http.MethodPost, h.http.URL+"/slack/commands", strings.NewReader("text=help"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || f.Served() != 0 {
		t.Fatalf("unsigned request: status %d, counted %d; want 401 and not counted", resp.StatusCode, f.Served())
	}
	h.command("U1", "C1", "help")
	if f.Served() != 1 || f.Active() != 0 {
		t.Errorf("signed command: counted %d, %d still active; want 1 and 0", f.Served(), f.Active())
	}
}

// Background work that takes its turn and then calls out must not wait for
// itself while requests keep coming: async gives its turn back before fn's
// own calls take theirs.
func TestForegroundAsyncCallsUnderFlood(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	f := NewForeground()
	h := newHarness(t, newFakeEngine(newTestClock()), func(c *Config) { c.Foreground = f })
	end := f.Begin() // a request that stays in flight: a flood
	defer end()
	client := &http.Client{Transport: f.Transport(http.DefaultTransport)}
	result := make(chan error, 1)
	h.bot.async(responseTimeout, func(ctx context.Context) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		if err == nil {
			var resp *http.Response
			if resp, err = client.Do(req); err == nil {
				resp.Body.Close()
			}
		}
		result <- err
	})
	if err := <-result; err != nil {
		t.Fatalf("a background call during a flood: %v", err)
	}
}
