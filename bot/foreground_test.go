package bot

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
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
	select {
	case <-f.idle:
	default:
		t.Error("idle is not signalled once no request is in flight")
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

func TestForegroundHandlerMarksRequests(t *testing.T) {
	f := NewForeground()
	var during int64
	h := f.handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { during = f.Active() }))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/slack/commands", nil))
	if during != 1 || f.Active() != 0 {
		t.Errorf("active = %d while answering and %d after, want 1 and 0", during, f.Active())
	}
}
