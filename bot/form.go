package bot

import (
	"bytes"
	"errors"
	"net/url"
	"slices"
	"unicode/utf8"

	"github.com/slack-go/slack"
)

var errFormSemicolon = errors.New("invalid semicolon separator in query")

// walkForm reads an application/x-www-form-urlencoded body as
// url.ParseQuery does, calling visit with each field's decoded key and
// value (valid only during the call; a field with a malformed escape is
// skipped), and returns the error url.ParseQuery would (a semicolon in a
// field wins over a malformed escape, and the first of those over later
// ones). It decodes into one buffer and keeps nothing; unlike
// url.ParseQuery it sets no limit on the number of fields (the body's size
// is bounded before it is read).
func walkForm(body []byte, visit func(key, value []byte)) error {
	var (
		formErr error
		buf     = make([]byte, 0, len(body)) // a field decodes to at most its length
	)
	for rest := body; len(rest) > 0; {
		var field []byte
		field, rest, _ = bytes.Cut(rest, []byte("&"))
		if bytes.IndexByte(field, ';') >= 0 {
			formErr = errFormSemicolon // as url.ParseQuery: this one wins
			continue
		}
		if len(field) == 0 {
			continue
		}
		k, v, _ := bytes.Cut(field, []byte("="))
		var err error
		if buf, err = appendUnescaped(buf[:0], k); err == nil {
			keyLen := len(buf)
			if buf, err = appendUnescaped(buf, v); err == nil {
				visit(buf[:keyLen], buf[keyLen:])
				continue
			}
		}
		if formErr == nil {
			formErr = err
		}
	}
	return formErr
}

// formValue returns the first value of key in an
// application/x-www-form-urlencoded body, as url.ParseQuery(body).Get(key)
// does, and fails where url.ParseQuery fails (a semicolon in a field, a
// malformed escape in any field). A click's body is one field holding the
// whole run message, JSON escaped byte by byte: url.ParseQuery took a third
// of its acknowledgement, copying the body, then counting and decoding
// its escapes through a strings.Builder.
func formValue(body []byte, key string) (value string, found bool, err error) {
	err = walkForm(body, func(k, v []byte) {
		if !found && string(k) == key {
			value, found = string(v), true
		}
	})
	if err != nil {
		return "", false, err
	}
	return value, found, nil
}

// appendUnescaped appends s decoded as url.QueryUnescape decodes it ("+"
// is a space, "%XX" the byte XX) to dst.
func appendUnescaped(dst, s []byte) ([]byte, error) {
	n := len(dst)
	out := slices.Grow(dst, len(s))[:n+len(s)] // s decodes to at most its length
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '%':
			if i+2 >= len(s) || hexValue[s[i+1]] > 0xf || hexValue[s[i+2]] > 0xf {
				return dst, url.EscapeError(s[i:min(i+3, len(s))])
			}
			out[n] = hexValue[s[i+1]]<<4 | hexValue[s[i+2]]
			i += 2
		case '+':
			out[n] = ' '
		default:
			out[n] = c
		}
		n++
	}
	return out[:n], nil
}

// errFormNotUTF8 is slashForm's error for a form that decodes to bytes
// that are not UTF-8.
var errFormNotUTF8 = errors.New("form is not valid UTF-8")

// slashForm reads a slash command's form body: each field of
// slack.SlashCommand is the first value of its key, as url.Values.Get gives
// it. It fails where url.ParseQuery fails (see walkForm), and otherwise
// with errFormNotUTF8 when a key or value of any field decodes to bytes
// that are not UTF-8 (Slack sends only UTF-8; anything else would be
// stored mangled). url.ParseQuery built a map of every field (a dozen, each
// a string and a slice), which a second loop then walked to check it, a
// tenth of the handler's work for `/sso-setup new` before its commit.
func slashForm(body []byte) (slack.SlashCommand, error) {
	var (
		cmd     slack.SlashCommand
		notUTF8 bool
		set     uint16 // bit i: the field fields[i] has its value
	)
	fields := slashFields(&cmd)
	err := walkForm(body, func(key, value []byte) {
		if !utf8.Valid(key) || !utf8.Valid(value) {
			notUTF8 = true
			return
		}
		for i, f := range fields {
			if f.key == string(key) {
				if set&(1<<i) == 0 {
					*f.dst, set = string(value), set|1<<i
				}
				return
			}
		}
	})
	switch {
	case err != nil:
		return slack.SlashCommand{}, err
	case notUTF8:
		return slack.SlashCommand{}, errFormNotUTF8
	}
	return cmd, nil
}

// slashField is a form key and the field of a slack.SlashCommand it sets.
type slashField struct {
	key string
	dst *string
}

func slashFields(c *slack.SlashCommand) [10]slashField {
	return [10]slashField{
		{"team_id", &c.TeamID}, {"team_domain", &c.TeamDomain}, {"channel_id", &c.ChannelID},
		{"channel_name", &c.ChannelName}, {"user_id", &c.UserID}, {"command", &c.Command},
		{"text", &c.Text}, {"response_url", &c.ResponseURL}, {"trigger_id", &c.TriggerID},
		{"api_app_id", &c.APIAppID},
	}
}

// hexValue maps a hex digit to its value and every other byte to 0xff.
var hexValue = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for c := byte('0'); c <= '9'; c++ {
		t[c] = c - '0'
	}
	for c := byte('a'); c <= 'f'; c++ {
		t[c] = c - 'a' + 10
		t[c-'a'+'A'] = c - 'a' + 10
	}
	return t
}()
