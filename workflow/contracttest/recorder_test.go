package contracttest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// TestRecorder records requests across several chunks from concurrent
// senders and checks every count and span.
func TestRecorder(t *testing.T) {
	var rec Recorder
	release := make(chan struct{})
	var held sync.WaitGroup
	h := rec.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("hold") != "" {
			held.Done()
			<-release // answered only at the end: its span stays open meanwhile
		}
	}))
	serve := func(method, target string) {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(method, target, nil))
	}
	var heldDone, done sync.WaitGroup
	held.Add(1)
	heldDone.Go(func() { serve(http.MethodGet, "/api/held/?hold=1") })
	held.Wait()
	const perSender, senders = 700, 4 // 2,800 more: past two chunk boundaries
	for s := range senders {
		done.Go(func() {
			for i := range perSender {
				method := http.MethodGet
				if i%2 == 1 {
					method = http.MethodPost
				}
				serve(method, fmt.Sprintf("/api/s%d/?n=%d", s, i))
			}
		})
	}
	done.Wait()
	if rec.Len() != 1+perSender*senders {
		t.Fatalf("Len = %d, want %d", rec.Len(), 1+perSender*senders)
	}
	if n := len(rec.Spans()); n != perSender*senders {
		t.Fatalf("%d spans ended before the held request was answered, want %d", n, perSender*senders)
	}
	for _, tt := range []struct {
		method, contains string
		withQuery        bool
		want             int
	}{
		{"", "/api/", false, 1 + perSender*senders},
		{http.MethodPost, "/api/", false, perSender * senders / 2},
		{http.MethodGet, "/api/s1/", false, perSender / 2},
		{"", "n=699", true, senders},
		{"", "n=699", false, 0},
		{"", "hold=1", true, 1},
	} {
		if got := rec.Count(tt.method, tt.contains, tt.withQuery); got != tt.want {
			t.Errorf("Count(%q, %q, %v) = %d, want %d", tt.method, tt.contains, tt.withQuery, got, tt.want)
		}
	}
	close(release)
	heldDone.Wait()
	// The held request is answered only now; its span was recorded first.
	if rec.Len() != len(rec.Spans()) {
		t.Fatalf("after the held request was answered: %d spans of %d requests", len(rec.Spans()), rec.Len())
	}
	if first := rec.Spans()[0]; !first.End.After(rec.Spans()[1].End) {
		t.Fatalf("the held request's span ended at %v, before the next one's (%v)", first.End, rec.Spans()[1].End)
	}
}
