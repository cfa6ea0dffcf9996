package bot

import (
	"bytes"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ssobot/ssobot/bot/slacktest"
	"github.com/ssobot/ssobot/workflow"
)

// Slack's published example (docs: verifying requests from Slack).
const (
	vectorTS   = "1531420618"
	vectorBody = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
	vectorSig  = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
)

func vectorHeader(sig, ts string) http.Header {
	h := http.Header{}
	if sig != "" {
		h.Set(HeaderSignature, sig)
	}
	if ts != "" {
		h.Set(HeaderTimestamp, ts)
	}
	return h
}

func TestVerify(t *testing.T) {
	at := time.Unix(1531420618, 0)
	secret := workflow.NewSecret(testSecret)
	tampered := []byte(vectorBody)
	tampered[len(tampered)-1] ^= 1
	tests := []struct {
		name   string
		header http.Header
		body   []byte
		secret workflow.Secret
		now    time.Time
		want   error
	}{
		{"published vector", vectorHeader(vectorSig, vectorTS), []byte(vectorBody), secret, at, nil},
		{"within the window, early clock", vectorHeader(vectorSig, vectorTS), []byte(vectorBody), secret, at.Add(-5 * time.Minute), nil},
		{"within the window, late clock", vectorHeader(vectorSig, vectorTS), []byte(vectorBody), secret, at.Add(5 * time.Minute), nil},
		{"expired", vectorHeader(vectorSig, vectorTS), []byte(vectorBody), secret, at.Add(5*time.Minute + time.Second), errExpired},
		{"from the future", vectorHeader(vectorSig, vectorTS), []byte(vectorBody), secret, at.Add(-5*time.Minute - time.Second), errExpired},
		{"tampered body", vectorHeader(vectorSig, vectorTS), tampered, secret, at, errBadSignature},
		{"other secret", vectorHeader(vectorSig, vectorTS), []byte(vectorBody), workflow.NewSecret("other"), at, errBadSignature},
		{"no secret configured", vectorHeader(vectorSig, vectorTS), []byte(vectorBody), workflow.Secret{}, at, errNoSecret},
		{"missing signature", vectorHeader("", vectorTS), []byte(vectorBody), secret, at, errMissingSignature},
		{"missing timestamp", vectorHeader(vectorSig, ""), []byte(vectorBody), secret, at, errMissingSignature},
		{"no v0 prefix", vectorHeader(vectorSig[3:], vectorTS), []byte(vectorBody), secret, at, errBadSignature},
		{"v1 scheme", vectorHeader("v1="+vectorSig[3:], vectorTS), []byte(vectorBody), secret, at, errBadSignature},
		{"not hex", vectorHeader("v0=zz", vectorTS), []byte(vectorBody), secret, at, errBadSignature},
		// Found by FuzzVerify: the same bytes in upper-case hex verified, so
		// a copied request could pass the replay check as a new one.
		{"upper-case hex", vectorHeader(strings.ToUpper(vectorSig[:3])+strings.ToUpper(vectorSig[3:]), vectorTS), []byte(vectorBody), secret, at, errBadSignature},
		{"mixed-case hex", vectorHeader("v0=A"+vectorSig[4:], vectorTS), []byte(vectorBody), secret, at, errBadSignature},
		{"trailing byte", vectorHeader(vectorSig+"0", vectorTS), []byte(vectorBody), secret, at, errBadSignature},
		{"short signature", vectorHeader(vectorSig[:20], vectorTS), []byte(vectorBody), secret, at, errBadSignature},
		{"timestamp not a number", vectorHeader(vectorSig, "yesterday"), []byte(vectorBody), secret, at, errBadTimestamp},
		{"timestamp changed", vectorHeader(vectorSig, "1531420619"), []byte(vectorBody), secret, at, errBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify(tt.header, tt.body, tt.secret, tt.now)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v; want %v", err, tt.want)
			}
		})
	}
}

func TestVerifyAgreesWithTheFake(t *testing.T) {
	now := time.Now()
	body := []byte("payload=%7B%7D")
	h := http.Header{}
	h.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	h.Set(HeaderSignature, slacktest.Sign(testSecret, now, body))
	if err := Verify(h, body, workflow.NewSecret(testSecret), now); err != nil {
		t.Fatalf("Verify of slacktest.Sign: %v", err)
	}
}

func FuzzVerify(f *testing.F) {
	f.Add([]byte(vectorBody), int64(1531420618), int64(0), "", "")
	f.Add([]byte(""), int64(1531420618), int64(301), "v0=", "1")
	f.Add([]byte("payload=x"), int64(1), int64(-301), vectorSig, "abc")
	f.Fuzz(func(t *testing.T, body []byte, ts, skew int64, sig, rawTS string) {
		secret := workflow.NewSecret(testSecret)
		skew %= 100_000 // keep times representable
		ts %= 100_000_000_000
		now := time.Unix(ts, 0).Add(time.Duration(skew) * time.Second)
		// Arbitrary headers never verify by accident and never panic.
		h := vectorHeader(sig, rawTS)
		if Verify(h, body, secret, now) == nil && sig != "" {
			want := "v0=" + hexOf(sign(nil, secret, rawTS, body))
			if sig != want {
				t.Fatalf("Verify accepted signature %q for a body it would sign %q", sig, want)
			}
		}
		// A correct signature verifies exactly when inside the window.
		tsText := strconv.FormatInt(ts, 10)
		good := vectorHeader("v0="+hexOf(sign(nil, secret, tsText, body)), tsText)
		err := Verify(good, body, secret, now)
		inWindow := skew >= -300 && skew <= 300 && ts > 0
		if inWindow && err != nil {
			t.Fatalf("Verify refused a good signature: %v", err)
		}
		if !inWindow && err == nil {
			t.Fatalf("Verify accepted ts=%d at skew %ds", ts, skew)
		}
		// Any change to the body breaks it.
		if inWindow {
			changed := append(bytes.Clone(body), 'x')
			if Verify(good, changed, secret, now) == nil {
				t.Fatal("Verify accepted a changed body")
			}
		}
	})
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}
