package workflow

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// RedirectError is a redirect that an API answered and ssobot did not
// follow: it talks to each API only at the URL it was configured with.
// Following could carry a token elsewhere: Go drops the Authorization
// header on a redirect to another host, but on a 307 or 308 it sends the
// body again, and Slack's auth.test carries the token in its form body.
type RedirectError struct {
	Status int
	// To is the target with only its scheme, host and path: the query,
	// fragment and user info of a login page's URL may hold a flow's state
	// or a password. Nil when the answer named no usable target.
	To *url.URL
}

func (e *RedirectError) Error() string {
	return fmt.Sprintf("%d %s: redirected to %s, which ssobot does not follow", e.Status, http.StatusText(e.Status), e.Where())
}

// Where names the target by scheme and host alone: its path may hold a
// login flow's state too.
func (e *RedirectError) Where() string {
	if e.To == nil {
		return "another address"
	}
	return e.To.Scheme + "://" + e.To.Host
}

// RefuseRedirects wraps rt (nil: http.DefaultTransport) so that a redirect
// comes back as a *RedirectError instead of a response for the
// http.Client to follow. A transport rather than a CheckRedirect: an error
// from CheckRedirect reaches the caller in a *url.Error quoting the raw
// Location, query and user info included.
func RefuseRedirects(rt http.RoundTripper) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	return refuseRedirects{rt}
}

type refuseRedirects struct{ rt http.RoundTripper }

func (t refuseRedirects) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := t.rt.RoundTrip(r)
	if err != nil || !followed(res.StatusCode) {
		return res, err
	}
	loc := res.Header.Get("Location")
	if loc == "" {
		return res, nil // no client follows a redirect without a target
	}
	// Read a little, as http.Client does, so the connection can be reused.
	_, _ = io.CopyN(io.Discard, res.Body, 2<<10)
	res.Body.Close()
	e := &RedirectError{Status: res.StatusCode}
	if u, err := r.URL.Parse(loc); err == nil && u.Host != "" {
		e.To = &url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
	}
	return nil, e
}

// followed reports the statuses an http.Client follows.
func followed(status int) bool {
	switch status {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return true
	}
	return false
}
