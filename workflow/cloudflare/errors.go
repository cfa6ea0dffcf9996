package cloudflare

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/cloudflare/cloudflare-go/v7/option"

	"github.com/ssobot/ssobot/workflow"
)

const system = "cloudflare"

// maxErrorBody bounds how much of an error response is kept.
const maxErrorBody = 64 << 10

// permissionHint tells an operator what a refused token lacks.
const permissionHint = `the API token needs the permission "Access: Organizations, Identity Providers, and Groups Write"`

// exchange records the HTTP response of one SDK call, so errors are built
// from the status, headers and envelope alone. The SDK's own error text
// includes the raw response and its error value the request, which carries
// the client secret on a create.
type exchange struct {
	status int
	header http.Header
	body   []byte // error responses only
	secret string // redacted from any message the API echoes back
}

func (x *exchange) option() option.RequestOption {
	return option.WithMiddleware(x.middleware)
}

func (x *exchange) middleware(req *http.Request, next option.MiddlewareNext) (*http.Response, error) {
	res, err := next(req)
	if err != nil || res == nil {
		return res, err
	}
	x.status = res.StatusCode
	x.header = res.Header.Clone()
	if res.StatusCode >= 300 {
		b, rerr := io.ReadAll(io.LimitReader(res.Body, maxErrorBody))
		_ = res.Body.Close()
		x.body = b
		res.Body = io.NopCloser(bytes.NewReader(b))
		if rerr != nil {
			// The status is known: the error is classified by it.
			x.body = nil
		}
	}
	return res, nil
}

// envelope is Cloudflare's response wrapper, as far as errors need it.
type envelope struct {
	Success bool `json:"success"`
	Errors  []struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"errors"`
}

// error turns a failed SDK call into a *workflow.APIError.
func (x *exchange) error(op string, err error) error {
	e := &workflow.APIError{System: system, Op: op, Status: x.status}
	switch {
	case x.status == 0, errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// No (complete) response: transport failure, timeout or cancellation. These
		// errors name the URL, never the body.
		e.Status = 0
		e.Err = err
		e.Permanent = redirected(err)
		return e
	case x.status < 300:
		// A success status with a body the SDK could not decode.
		return malformed(op, x.status, err)
	}
	var env envelope
	if json.Unmarshal(x.body, &env) == nil && len(env.Errors) > 0 {
		e.Code = env.Errors[0].Code
		msgs := make([]string, 0, len(env.Errors))
		for _, m := range env.Errors {
			if m.Message != "" {
				msgs = append(msgs, m.Message)
			}
		}
		e.Message = strings.Join(msgs, "; ")
	}
	if e.Message == "" {
		e.Message = "no error message in the response"
	}
	if x.secret != "" {
		e.Message = strings.ReplaceAll(e.Message, x.secret, "[redacted]")
	}
	if (x.status == http.StatusUnauthorized || x.status == http.StatusForbidden) && e.Code != 0 {
		// Only with Cloudflare's envelope: without one, a proxy answered.
		e.Message += ": " + permissionHint
	}
	if x.status == http.StatusTooManyRequests {
		e.RetryAfter = workflow.ParseRetryAfter(x.header.Get("Retry-After"), time.Now())
	}
	return e
}

// redirected reports a redirect refused: asking again gets the same one.
func redirected(err error) bool {
	var re *workflow.RedirectError
	return errors.As(err, &re)
}

// malformed reports an answer that could not be read. It is transient
// (Status 0, "no usable response"): a proxy or a cut connection may have
// garbled it, and a create may have happened, which the engine reconciles.
func malformed(op string, status int, err error) error {
	return &workflow.APIError{System: system, Op: op,
		Err: fmt.Errorf("malformed response (HTTP %d): %w", status, sanitize(err))}
}

// sanitize keeps the kind of a decoding error but drops text that could
// quote the response.
func sanitize(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return io.ErrUnexpectedEOF
	case errors.As(err, &syn):
		return fmt.Errorf("invalid JSON at offset %d", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Errorf("unexpected JSON %s for %s", typ.Value, typ.Field)
	}
	return errors.New("undecodable body")
}
