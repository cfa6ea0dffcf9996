package slacktest

import (
	"encoding/json"
	"log/slog"
	"maps"
	"net/url"
	"strings"
	"time"
)

// Methods recorded as calls that are not Web API methods.
const (
	// MethodResponseURL is a POST to a response_url handed out by
	// NewResponseURL or NewResponseURLFor.
	MethodResponseURL = "response_url"
	// MethodHello is the hello the fake sent to a new Socket Mode
	// connection; from then on the connection receives envelopes.
	MethodHello = "socket_mode.hello"
	// MethodEnvelope is an envelope the fake sent over Socket Mode.
	MethodEnvelope = "socket_mode.envelope"
	// MethodAck is an acknowledgement the client sent over Socket Mode.
	MethodAck = "socket_mode.ack"
)

// Call is one request the fake received (or, for MethodEnvelope, sent).
// The token is kept apart from the arguments and never printed.
type Call struct {
	Method string
	// Form holds form-encoded arguments and the query string, without the
	// token.
	Form url.Values
	// JSON holds the body when it was JSON, without a "token" key.
	JSON map[string]any
	// Token is the credential the request carried (Authorization header or
	// token argument). String, GoString and LogValue leave it out.
	Token string
	At    time.Time
	// Status is the HTTP status answered (0 for Socket Mode messages).
	Status int
	// Error is the Slack error code answered, "" on success.
	Error string
	// Result is the response body as sent.
	Result map[string]any
	// URL is the response_url for MethodResponseURL calls.
	URL string
}

// Param returns the argument k from Form or JSON ("" when absent); JSON
// values that are not strings come back as JSON text.
func (c Call) Param(k string) string {
	return params{form: c.Form, json: c.JSON}.str(k)
}

// String describes the call without its token, e.g.
// `chat.postMessage channel=C1&text=hi -> not_in_channel`.
func (c Call) String() string {
	var b strings.Builder
	b.WriteString(c.Method)
	if c.URL != "" {
		b.WriteString(" ")
		b.WriteString(c.URL)
	}
	if len(c.Form) > 0 {
		f := maps.Clone(c.Form)
		f.Del("token")
		b.WriteString(" ")
		b.WriteString(f.Encode())
	}
	if c.JSON != nil {
		j := maps.Clone(c.JSON)
		delete(j, "token")
		if data, err := json.Marshal(j); err == nil {
			b.WriteString(" ")
			b.Write(data)
		}
	}
	if c.Error != "" {
		b.WriteString(" -> ")
		b.WriteString(c.Error)
	}
	return b.String()
}

// GoString keeps %#v from printing the token.
func (c Call) GoString() string { return "slacktest.Call{" + c.String() + "}" }

// LogValue keeps slog from printing the token.
func (c Call) LogValue() slog.Value { return slog.StringValue(c.String()) }
