package workflow_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ssobot/ssobot/workflow"
)

// TestRefuseRedirects: a client over RefuseRedirects follows no redirect,
// sends nothing to its target (not a POST body on a 307), and names the
// target by scheme and host, never its user info, path or query.
func TestRefuseRedirects(t *testing.T) {
	var reached atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
	}))
	defer target.Close()
	tests := []struct {
		name     string
		status   int
		location string
		want     string // in the error; "" for the response itself
		wantTo   string // the RedirectError's To
	}{
		{"302 to another host", http.StatusFound, strings.Replace(target.URL, "://", "://user:hunter2@", 1) + "/login/s3cr3t?state=s3cr3t#s3cr3t",
			"302 Found: redirected to " + target.URL + ", which ssobot does not follow", target.URL + "/login/s3cr3t"},
		{"307 keeps the method and body", http.StatusTemporaryRedirect, target.URL + "/api/auth.test", "307 Temporary Redirect: redirected to " + target.URL, target.URL + "/api/auth.test"},
		{"308", http.StatusPermanentRedirect, target.URL + "/", "308 Permanent Redirect", target.URL + "/"},
		{"301", http.StatusMovedPermanently, target.URL, "301 Moved Permanently", target.URL},
		{"303", http.StatusSeeOther, target.URL, "303 See Other", target.URL},
		{"relative", http.StatusFound, "/elsewhere?q=s3cr3t", "302 Found: redirected to http://127.0.0.1:", ""},
		{"no target", http.StatusFound, "", "", ""},
		{"unreadable target", http.StatusFound, "http://[::1", "302 Found: redirected to another address", ""},
		{"304 is no redirect", http.StatusNotModified, target.URL, "", ""},
		{"300 is not followed", http.StatusMultipleChoices, target.URL, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tt.location != "" {
					w.Header().Set("Location", tt.location)
				}
				w.WriteHeader(tt.status)
				io.WriteString(w, "moved")
			}))
			defer srv.Close()
			client := &http.Client{Transport: workflow.RefuseRedirects(nil)}
			res, err := client.Post(srv.URL+"/api/auth.test", "application/x-www-form-urlencoded", strings.NewReader("token=xoxb-s3cr3t"))
			if reached.Load() != 0 {
				t.Fatal("the redirect was followed")
			}
			if tt.want == "" {
				if err != nil {
					t.Fatalf("error %v; want the %d response", err, tt.status)
				}
				res.Body.Close()
				if res.StatusCode != tt.status {
					t.Errorf("status %d; want %d", res.StatusCode, tt.status)
				}
				return
			}
			var re *workflow.RedirectError
			if !errors.As(err, &re) {
				t.Fatalf("error %v (%T); want a *workflow.RedirectError", err, err)
			}
			if re.Status != tt.status || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "s3cr3t") || strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q (status %d); want %d and %q, without the target's path, query or user info", err, re.Status, tt.status, tt.want)
			}
			if tt.wantTo != "" && (re.To == nil || re.To.String() != tt.wantTo) {
				t.Errorf("To %v; want %s", re.To, tt.wantTo)
			}
		})
	}
}
