package workflow

import (
	"fmt"
	"log/slog"
)

// Secret holds a credential in memory. Every way of printing, logging or
// encoding it yields "[redacted]"; only Reveal gives the value, and only the
// adapter that sends it calls that.
//
// The value sits behind a pointer: fmt cannot call Format on a Secret held in
// an unexported field (a client's token, the bot's config), and prints such
// fields' contents instead, which would then be an address, not the value.
type Secret struct{ p *string }

// NewSecret wraps a credential.
func NewSecret(v string) Secret {
	if v == "" {
		return Secret{}
	}
	return Secret{p: &v}
}

// Reveal returns the credential for the one call that must send it.
func (s Secret) Reveal() string {
	if s.p == nil {
		return ""
	}
	return *s.p
}

// IsZero reports whether no credential is held.
func (s Secret) IsZero() bool { return s.p == nil }

const redacted = "[redacted]"

func (s Secret) String() string               { return redacted }
func (s Secret) GoString() string             { return redacted }
func (s Secret) Format(f fmt.State, _ rune)   { _, _ = f.Write([]byte(redacted)) }
func (s Secret) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }
