package workflow_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ssobot/ssobot/workflow"
)

func TestSlugify(t *testing.T) {
	tests := []struct{ name, want string }{
		{"Grafana", "grafana"},
		{"My App", "my-app"},
		{`  "Quoted"  Name!! `, "quoted-name"},
		{"Zürich Büro", "zurich-buro"},
		{"a--b__c", "a-b-c"},
		{"日本語", ""},
		{"<!channel>", "channel"},
		{strings.Repeat("abcdefghij", 6), strings.Repeat("abcdefghij", 5)},
		{strings.Repeat("a", 49) + " b", strings.Repeat("a", 49)},
	}
	for _, tt := range tests {
		if got := workflow.Slugify(tt.name); got != tt.want {
			t.Errorf("Slugify(%q) = %q, want %q", tt.name, got, tt.want)
		}
		if tt.want != "" {
			if err := workflow.ValidateSlug(workflow.Slugify(tt.name)); err != nil {
				t.Errorf("derived slug %q invalid: %v", tt.want, err)
			}
		}
	}
}

func TestValidateSlug(t *testing.T) {
	tests := []struct {
		slug string
		ok   bool
	}{
		{"grafana", true}, {"my-app-2", true}, {"", false}, {"Grafana", false}, {"-a", false}, {"a-", false},
		{"a_b", false}, {"token", false}, {"authorize", false}, {strings.Repeat("a", 51), false}, {strings.Repeat("a", 50), true},
	}
	for _, tt := range tests {
		err := workflow.ValidateSlug(tt.slug)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateSlug(%q) = %v, want ok=%v", tt.slug, err, tt.ok)
		}
		if err != nil && !errors.Is(err, workflow.ErrInvalidRequest) {
			t.Errorf("ValidateSlug(%q) error does not wrap ErrInvalidRequest", tt.slug)
		}
	}
}

func TestValidateName(t *testing.T) {
	tests := []struct {
		name, want string // want: part of the error, "" for valid
	}{
		{"Grafana", ""},
		{"Grafana (staging) — EU", ""},
		{"Café Ünïcode 日本", ""},
		{"", "is empty"},
		{"   ", "is empty"},
		{"Gra\x00fana", "control characters"},
		{"Gra\nfana", "control characters"},
		{"\xff", "not valid UTF-8"},
		{strings.Repeat("a", 101), "longer than 100"},
		{strings.Repeat("é", 100), ""},
		// A right-to-left override shows approvers "Grafana staging"
		// while "Grafana gnigats" is created.
		{"Grafana \u202egnigats\u202c", "invisible direction or zero-width"},
		{"Gra\u200bfana", "invisible direction or zero-width"},
		{"Grafana\u2066x\u2069", "invisible direction or zero-width"},
		{"Grafana\u200f", "invisible direction or zero-width"},
		// Joiners belong to the spelling of Persian, Indic scripts and emoji.
		{"نرم\u200cافزار", ""},
		{"Team 👩\u200d💻 Portal", ""},
		{"क्\u200dष Portal", ""},
	}
	for _, tt := range tests {
		err := workflow.ValidateName("application name", tt.name)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("ValidateName(%q) = %v, want ok", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("ValidateName(%q) = %v, want an error saying %q", tt.name, err, tt.want)
		case err != nil && !errors.Is(err, workflow.ErrInvalidRequest):
			t.Errorf("ValidateName(%q) error does not wrap ErrInvalidRequest", tt.name)
		}
	}
}

func TestNormalizeTeamDomain(t *testing.T) {
	tests := []struct{ in, want string }{
		{"company", "company.cloudflareaccess.com"},
		{"company.cloudflareaccess.com", "company.cloudflareaccess.com"},
		{"https://Company.cloudflareaccess.com/", "company.cloudflareaccess.com"},
		{"my-team", "my-team.cloudflareaccess.com"},
		{"evil.com/x", ""}, {"", ""}, {"-bad", ""}, {"a b", ""},
	}
	for _, tt := range tests {
		got, err := workflow.NormalizeTeamDomain(tt.in)
		if tt.want == "" {
			if err == nil {
				t.Errorf("NormalizeTeamDomain(%q) = %q, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("NormalizeTeamDomain(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestTransitions(t *testing.T) {
	allowed := map[[2]workflow.State]bool{}
	for _, p := range [][2]workflow.State{
		{"pending", "awaiting_approval"}, {"pending", "failed"}, {"pending", "cancelled"},
		{"awaiting_approval", "running"}, {"awaiting_approval", "rejected"}, {"awaiting_approval", "expired"}, {"awaiting_approval", "cancelled"},
		{"running", "awaiting_approval"}, {"running", "succeeded"}, {"running", "failed"}, {"running", "cancelled"},
		{"failed", "pending"}, {"failed", "running"}, {"expired", "awaiting_approval"},
	} {
		allowed[p] = true
	}
	for _, from := range workflow.States {
		for _, to := range workflow.States {
			if got := workflow.CanTransition(from, to); got != allowed[[2]workflow.State{from, to}] {
				t.Errorf("CanTransition(%s, %s) = %v", from, to, got)
			}
		}
	}
	for _, s := range workflow.States {
		if !s.Valid() {
			t.Errorf("%s not valid", s)
		}
	}
	if workflow.State("paused").Valid() {
		t.Error("unknown state valid")
	}
	// Retryable: the ended states a run leaves again, which only a retry
	// does.
	for _, s := range workflow.States {
		leaves := false
		for _, to := range workflow.States {
			leaves = leaves || workflow.CanTransition(s, to)
		}
		if want := s.Terminal() && leaves; s.Retryable() != want {
			t.Errorf("%s: Retryable() = %v, want %v", s, s.Retryable(), want)
		}
	}
}

func TestBackoff(t *testing.T) {
	p := workflow.RetryPolicy{MaxAttempts: 8, Base: time.Second, Max: time.Minute}
	for failed := 1; failed <= 12; failed++ {
		full := min(time.Second<<(failed-1), time.Minute)
		for range 50 {
			d := p.Backoff(failed, 0)
			if d < full/2 || d > full {
				t.Fatalf("Backoff(%d) = %s, want within [%s, %s]", failed, d, full/2, full)
			}
		}
	}
	if d := p.Backoff(1, 5*time.Minute); d != 5*time.Minute {
		t.Errorf("Retry-After not honoured: %s", d)
	}
}

// TestBackoffOddPolicies: a policy or count the engine's defaults would
// not give (no failure yet, a non-positive base or cap, a base that
// overflows when doubled) still gives a wait within bounds, never a panic.
func TestBackoffOddPolicies(t *testing.T) {
	tests := []struct {
		name     string
		p        workflow.RetryPolicy
		failed   int
		min, max time.Duration
	}{
		{"no failure yet", workflow.RetryPolicy{Base: time.Second, Max: time.Minute}, 0, time.Second / 2, time.Second},
		{"negative failures", workflow.RetryPolicy{Base: time.Second, Max: time.Minute}, -3, time.Second / 2, time.Second},
		{"most negative failures", workflow.RetryPolicy{Base: time.Second, Max: time.Minute}, math.MinInt, time.Second / 2, time.Second},
		{"huge failures", workflow.RetryPolicy{Base: time.Second, Max: time.Minute}, math.MaxInt, time.Minute / 2, time.Minute},
		{"zero policy", workflow.RetryPolicy{}, 1, time.Second / 2, time.Second},
		{"zero policy, many failures", workflow.RetryPolicy{}, 40, 5 * time.Minute / 2, 5 * time.Minute},
		{"zero max", workflow.RetryPolicy{Base: time.Second}, 40, 5 * time.Minute / 2, 5 * time.Minute},
		{"negative max", workflow.RetryPolicy{Base: time.Second, Max: -time.Minute}, 3, 2 * time.Second, 4 * time.Second},
		{"negative base", workflow.RetryPolicy{Base: -time.Second, Max: time.Minute}, 1, time.Second / 2, time.Second},
		{"base above max", workflow.RetryPolicy{Base: time.Hour, Max: time.Minute}, 1, time.Minute / 2, time.Minute},
		{"base that overflows when doubled", workflow.RetryPolicy{Base: time.Hour, Max: math.MaxInt64}, 40, math.MaxInt64 / 2, math.MaxInt64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 50 {
				d := tt.p.Backoff(tt.failed, 0)
				if d < tt.min || d > tt.max {
					t.Fatalf("Backoff(%d) = %s, want within [%s, %s]", tt.failed, d, tt.min, tt.max)
				}
			}
		})
	}
}

// TestBackoffCapsRetryAfter: a Retry-After is honoured up to
// MaxRetryAfter, however long (a year, the longest Duration) it asks for,
// and a negative one (as a bad header could give) counts as none.
func TestBackoffCapsRetryAfter(t *testing.T) {
	p := workflow.RetryPolicy{MaxAttempts: 8, Base: time.Second, Max: time.Minute}
	tests := []struct {
		name       string
		retryAfter time.Duration
		min, max   time.Duration
	}{
		{"within the cap", 2 * time.Minute, 2 * time.Minute, 2 * time.Minute},
		{"at the cap", workflow.MaxRetryAfter, workflow.MaxRetryAfter, workflow.MaxRetryAfter},
		{"a year", 365 * 24 * time.Hour, workflow.MaxRetryAfter, workflow.MaxRetryAfter},
		{"longest duration", math.MaxInt64, workflow.MaxRetryAfter, workflow.MaxRetryAfter},
		{"negative", -292 * 365 * 24 * time.Hour, time.Second / 2, time.Second},
		{"most negative", math.MinInt64, time.Second / 2, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := p.Backoff(1, tt.retryAfter); d < tt.min || d > tt.max {
				t.Errorf("Backoff(1, %v) = %v, want within [%v, %v]", tt.retryAfter, d, tt.min, tt.max)
			}
		})
	}
}

// TestParseRetryAfter: delay-seconds are digits only (RFC 9110); NaN,
// infinities, exponents, fractions, signs and numbers beyond 64 bits count
// as absent, as a date in the past does; the wait is cut to MaxRetryAfter.
func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		h    string
		want time.Duration
	}{
		{"", 0},
		{"   ", 0},
		{"12", 12 * time.Second},
		{"\t12 ", 12 * time.Second},
		{"0", 0},
		{"007", 7 * time.Second},
		{"-1", 0},
		{"NaN", 0},
		{"+Inf", 0},
		{"-Inf", 0},
		{"1e10", 0},
		{"1.5", 0},
		{"+5", 0},
		{"٣", 0}, // an Arabic-Indic digit is not DIGIT
		{"99999999999999999999", 0},
		{"31536000", workflow.MaxRetryAfter},
		{"10000000000", workflow.MaxRetryAfter},
		{now.Add(2 * time.Minute).Format(http.TimeFormat), 2 * time.Minute},
		{now.Add(-time.Second).Format(http.TimeFormat), 0},
		{now.Add(24 * time.Hour).Format(http.TimeFormat), workflow.MaxRetryAfter},
		{"Fri, 31 Dec 9999 23:59:59 GMT", workflow.MaxRetryAfter},
		{"Sat, 28 Nov 2026 12:00:30 GMT", 30 * time.Second},
		{"Saturday, 28-Nov-26 12:00:30 GMT", 30 * time.Second},
		{"Sat Nov 28 12:00:30 2026", 30 * time.Second},
		{"2026-11-28T12:00:30Z", 0},
		{"later", 0},
		// Cases the adapters' own tables held when each wrapped this.
		{"-0", 0},
		{"nan", 0},
		{"Inf", 0},
		{"Infinity", 0},
		{"1_000", 0},
		{"0x10", 0},
		{"1 2", 0},
		{"18446744073709551616", 0},
		{"18446744073709551615", workflow.MaxRetryAfter},
		{"9223372036", workflow.MaxRetryAfter},
		{"9223372037", workflow.MaxRetryAfter},
		{"300", workflow.MaxRetryAfter},
		{"299", 299 * time.Second},
		{"Mon, 01 Jan 0001 00:00:00 GMT", 0},
	}
	for _, tt := range tests {
		if got := workflow.ParseRetryAfter(tt.h, now); got != tt.want {
			t.Errorf("ParseRetryAfter(%q) = %v, want %v", tt.h, got, tt.want)
		}
	}
}

func TestSecretNeverPrints(t *testing.T) {
	s := workflow.NewSecret("hunter2-secret")
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "secret", s)
	j, _ := json.Marshal(struct{ S workflow.Secret }{s})
	outputs := []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s %q", s, s, s, s, s), string(j), logs.String(),
		fmt.Sprintf("%v", struct{ S workflow.Secret }{s})}
	for _, out := range outputs {
		if strings.Contains(out, "hunter2") {
			t.Errorf("secret leaked: %s", out)
		}
	}
	if s.Reveal() != "hunter2-secret" {
		t.Error("Reveal lost the value")
	}
}

// TestSecretNeverEncodes calls each method of Secret directly and through the
// encoders that use them: fmt alone goes through Format, so String, GoString
// and MarshalText need their own cases.
func TestSecretNeverEncodes(t *testing.T) {
	s := workflow.NewSecret("hunter2-secret")
	tests := []struct {
		name string
		out  func() (string, error)
	}{
		{"String", func() (string, error) { return s.String(), nil }},
		{"GoString", func() (string, error) { return s.GoString(), nil }},
		{"MarshalText", func() (string, error) { b, err := s.MarshalText(); return string(b), err }},
		{"MarshalJSON", func() (string, error) { b, err := s.MarshalJSON(); return string(b), err }},
		{"LogValue", func() (string, error) { return s.LogValue().String(), nil }},
		{"fmt %#v", func() (string, error) { return fmt.Sprintf("%#v", s), nil }},
		{"fmt %#v in a struct", func() (string, error) { return fmt.Sprintf("%#v", struct{ S workflow.Secret }{s}), nil }},
		{"fmt %#v pointer", func() (string, error) { return fmt.Sprintf("%#v", &s), nil }},
		{"json map key", func() (string, error) {
			b, err := json.Marshal(map[workflow.Secret]int{s: 1})
			return string(b), err
		}},
		{"json pointer", func() (string, error) { b, err := json.Marshal(&s); return string(b), err }},
		{"yaml", func() (string, error) { b, err := yaml.Marshal(s); return string(b), err }},
		{"yaml field", func() (string, error) {
			b, err := yaml.Marshal(struct{ S workflow.Secret }{s})
			return string(b), err
		}},
		{"yaml map key", func() (string, error) {
			b, err := yaml.Marshal(map[workflow.Secret]int{s: 1})
			return string(b), err
		}},
	}
	// fmt calls no method of a value in an unexported field (a client's
	// token, the bot's config): it prints the fields, so these must not
	// hold the value itself.
	type holder struct {
		name  string
		token workflow.Secret
	}
	h := holder{"x", s}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		for _, v := range []any{h, &h, []holder{h}, map[string]holder{"k": h}} {
			if out := fmt.Sprintf(verb, v); strings.Contains(out, "hunter2") {
				t.Errorf("fmt %s of an unexported field leaked the secret: %s", verb, out)
			}
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := tt.out()
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(out, "hunter2") {
				t.Errorf("secret leaked: %s", out)
			}
			if !strings.Contains(out, "[redacted]") {
				t.Errorf("output %q does not say [redacted]", out)
			}
		})
	}
}

func TestAPIErrorClassification(t *testing.T) {
	tests := []struct {
		err       error
		transient bool
		notFound  bool
	}{
		{&workflow.APIError{Status: 429}, true, false},
		{&workflow.APIError{Status: 503}, true, false},
		{&workflow.APIError{Status: 0, Err: errors.New("reset")}, true, false},
		{&workflow.APIError{Status: 400}, false, false},
		{&workflow.APIError{Status: 403}, false, false},
		{&workflow.APIError{Status: 404}, false, true},
		{&workflow.APIError{Permanent: true}, false, false},
		{fmt.Errorf("wrapped: %w", &workflow.APIError{Status: 502}), true, false},
		{errors.New("plain"), false, false},
	}
	for _, tt := range tests {
		if got := workflow.IsTransient(tt.err); got != tt.transient {
			t.Errorf("IsTransient(%v) = %v", tt.err, got)
		}
		if got := errors.Is(tt.err, workflow.ErrNotFound); got != tt.notFound {
			t.Errorf("Is(%v, ErrNotFound) = %v", tt.err, got)
		}
	}
}

func TestRetryAfterTakesTheLongest(t *testing.T) {
	err := fmt.Errorf("preflight: %w", errors.Join(
		&workflow.APIError{System: "authentik", Status: 429, RetryAfter: 7 * time.Second},
		fmt.Errorf("wrapped: %w", &workflow.APIError{System: "cloudflare", Status: 429, RetryAfter: 300 * time.Second}),
		errors.New("other"),
	))
	if got := workflow.RetryAfter(err); got != 300*time.Second {
		t.Errorf("RetryAfter = %s, want 5m", got)
	}
	if got := workflow.RetryAfter(errors.New("plain")); got != 0 {
		t.Errorf("RetryAfter(plain) = %s", got)
	}
}

// TestApprovalSetAsideEncoding: SetAside is left out of the JSON while
// false, and an approval stored before it existed decodes with it false:
// runs stored by earlier versions read the same.
func TestApprovalSetAsideEncoding(t *testing.T) {
	old := `{"gate":"authentik","user":"U1","decision":"approve","at":"2026-11-28T12:00:00Z","lapsed":true}`
	var a workflow.Approval
	if err := json.Unmarshal([]byte(old), &a); err != nil {
		t.Fatal(err)
	}
	if !a.Lapsed || a.SetAside || a.Counts(workflow.GateAuthentik) {
		t.Errorf("decoded %+v; want lapsed, not set aside, not counting", a)
	}
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != old {
		t.Errorf("encoded %s; want %s unchanged", b, old)
	}
	a.Lapsed, a.SetAside = false, true
	if b, _ = json.Marshal(a); !strings.Contains(string(b), `"set_aside":true`) || a.Counts(workflow.GateAuthentik) {
		t.Errorf("set-aside approval encodes as %s, counts %v; want set_aside true and not counting", b, a.Counts(workflow.GateAuthentik))
	}
}
