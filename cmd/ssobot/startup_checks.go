package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/slack-go/slack"

	"github.com/ssobot/ssobot/workflow"
	"github.com/ssobot/ssobot/workflow/cloudflare"
)

// Answers that succeed but are not the service's: a stub or another
// server at the URL.
var (
	errNoSlackIdentity = errors.New("the answer names no user_id, or neither team_id nor enterprise_id")
	errNoAuthentikUser = errors.New("the answer names no user")
)

// apiURL is where a start-up check asks: the variable setting the base
// URL, its value, and what it should be.
type apiURL struct {
	Service  string // "Slack", "authentik", "Cloudflare"
	Variable string // e.g. SLACK_API_URL
	URL      string // as configured, or the default
	Want     string // e.g. "Slack's Web API base URL (https://slack.com/api/)"
}

// slackRefusals are the errors with which Slack refuses a token itself
// (auth.test, apps.connections.open), as opposed to failing to answer.
// missing_scope is apps.connections.open's answer to an app-level token
// without connections:write; accesslimited a token limited to other
// networks.
var slackRefusals = map[string]bool{
	"not_authed": true, "invalid_auth": true, "account_inactive": true,
	"token_revoked": true, "token_expired": true, "no_permission": true,
	"missing_scope": true, "not_allowed_token_type": true,
	"org_login_required": true, "ekm_access_denied": true,
	"team_access_not_granted": true, "two_factor_setup_required": true,
	"accesslimited": true,
}

// cloudflareBadHeaders is Cloudflare's code for an Authorization header it
// cannot read (400, error chain 6111): a token with a stray character.
const cloudflareBadHeaders = 6003

// refused reports an answer in which the service itself refuses the
// credential. Anything else, an HTTP error from a proxy or a wrong URL, a
// redirect, a timeout, an answer that is not the service's, says nothing of
// the credential.
func refused(err error) bool {
	var (
		se       slack.SlackErrorResponse
		inactive *cloudflare.TokenStatusError
		api      *workflow.APIError
	)
	switch {
	case errors.As(err, &se):
		return slackRefusals[se.Err]
	case errors.As(err, &inactive):
		return true
	case errors.As(err, &api):
		switch api.System {
		case "authentik":
			// authentik refuses with 403 and {"detail": ...}, never 401: a
			// 403 without that body is a proxy's.
			return api.Status == http.StatusForbidden && api.Message != ""
		case "cloudflare":
			// Only with Cloudflare's error envelope, which gives a code.
			switch api.Status {
			case http.StatusUnauthorized, http.StatusForbidden:
				return api.Code != 0
			case http.StatusBadRequest:
				return api.Code == cloudflareBadHeaders
			}
		}
	}
	return false
}

// Hint says what to check when the answer says nothing of the credential,
// naming the variable with the URL asked.
func (e *CredentialError) Hint() string {
	at := e.At
	where := at.Variable + " " + at.URL
	call := e.Call
	if call == "" {
		call = "the check"
	}
	var (
		re  *workflow.RedirectError
		api *workflow.APIError
		sc  slack.StatusCodeError
		rl  *slack.RateLimitedError
		se  slack.SlackErrorResponse
	)
	status := 0
	switch {
	case errors.As(e.Err, &api):
		status = api.Status
	case errors.As(e.Err, &sc):
		status = sc.Code
	}
	switch {
	case errors.As(e.Err, &re):
		return fmt.Sprintf("%s answered a redirect to %s, which ssobot does not follow: set %s to %s", where, re.Where(), at.Variable, at.suggest(re.To, e.Call))
	case status >= 300 && status < 400:
		return fmt.Sprintf("%s answered a redirect (%d %s), which ssobot does not follow: set %s to %s", where, status, http.StatusText(status), at.Variable, at.suggest(nil, ""))
	case status == http.StatusNotFound:
		return fmt.Sprintf("%s answered 404 Not Found for %s: is %s %s?", where, call, at.Variable, at.Want)
	case status >= 500:
		return fmt.Sprintf("%s answered %d %s for %s: a server error (the service's or a proxy's) says nothing of the token; try again, and if it persists: is %s %s?", where, status, http.StatusText(status), call, at.Variable, at.Want)
	case status == http.StatusUnauthorized && at.Service == "authentik":
		return fmt.Sprintf("%s answered 401 Unauthorized for %s, but authentik refuses a token with 403: something in front of it asks for credentials of its own; let ssobot reach authentik's API directly at %s", where, call, at.Variable)
	case status != 0:
		return fmt.Sprintf("%s answered %d %s for %s, which is not how %s refuses a token (a proxy's answer?): is %s %s, reached directly?", where, status, http.StatusText(status), call, at.Service, at.Variable, at.Want)
	case errors.As(e.Err, &rl):
		return fmt.Sprintf("%s is rate-limiting %s: try again in %s", where, call, rl.RetryAfter)
	case errors.As(e.Err, &se):
		return fmt.Sprintf("%s answered %s with error %q, which says nothing of the token: try again, and if it persists: is %s %s?", where, call, se.Err, at.Variable, at.Want)
	case timedOut(e.Err):
		return fmt.Sprintf("no answer from %s in time: check %s, the network, and any proxy or firewall", where, at.Variable)
	case tlsFailed(e.Err):
		return fmt.Sprintf("TLS with %s failed (a certificate the process does not trust, or a server that does not speak https): check %s", where, at.Variable)
	case unreachable(e.Err):
		return fmt.Sprintf("could not reach %s: check %s, DNS, and any proxy or firewall", where, at.Variable)
	}
	return fmt.Sprintf("the answer of %s to %s does not look like %s's: is %s %s?", where, call, at.Service, at.Variable, at.Want)
}

// suggest is the base URL a redirect points to when its target is the
// same call under another base (http to https, another path), else where
// to look. Only then is the target's path shown: otherwise it may hold a
// login page's state.
func (at apiURL) suggest(to *url.URL, call string) string {
	if to != nil && call != "" {
		if base, ok := strings.CutSuffix(to.Path, strings.TrimPrefix(call, "/")); ok && strings.HasSuffix(base, "/") {
			return to.Scheme + "://" + to.Host + base
		}
	}
	return "the address where " + at.Service + " answers directly (is a proxy or login page in front of it?)"
}

func timedOut(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func tlsFailed(err error) bool {
	var (
		verify  *tls.CertificateVerificationError
		unknown x509.UnknownAuthorityError
		invalid x509.CertificateInvalidError
		host    x509.HostnameError
		record  tls.RecordHeaderError
		alert   tls.AlertError
	)
	return errors.As(err, &verify) || errors.As(err, &unknown) || errors.As(err, &invalid) ||
		errors.As(err, &host) || errors.As(err, &record) || errors.As(err, &alert)
}

func unreachable(err error) bool {
	var (
		dns *net.DNSError
		op  *net.OpError
	)
	return errors.As(err, &dns) || errors.As(err, &op)
}
