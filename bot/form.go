package bot

import (
	"bytes"
	"errors"
	"net/url"
	"unicode/utf8"

	"github.com/slack-go/slack"
)

var errFormSemicolon = errors.New("invalid semicolon separator in query")

// formValue returns the first value of key in an
// application/x-www-form-urlencoded body, as url.ParseQuery(body).Get(key)
// does, and fails where url.ParseQuery fails (a semicolon in a field, a
// malformed escape in any field). A click's body is one field holding the
// whole run message, JSON escaped byte by byte: url.ParseQuery took a third
// of its acknowledgement, copying the body, then counting and decoding
// its escapes through a strings.Builder. This decodes the value once, into
// a buffer of the right size.
func formValue(body []byte, key string) (value string, found bool, err error) {
	var formErr error
	keep := func(err error) {
		if formErr == nil {
			formErr = err
		}
	}
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
		decodedKey, err := formUnescape(k)
		if err != nil {
			keep(err)
			continue
		}
		if found || string(decodedKey) != key {
			if _, err := formUnescape(v); err != nil {
				keep(err)
			}
			continue
		}
		decoded, err := formUnescape(v)
		if err != nil {
			keep(err)
			continue
		}
		value, found = string(decoded), true
	}
	if formErr != nil {
		return "", false, formErr
	}
	return value, found, nil
}

// formUnescape decodes a form field's key or value as url.QueryUnescape
// does: "+" is a space, "%XX" the byte XX.
func formUnescape(s []byte) ([]byte, error) { return appendUnescaped(make([]byte, 0, len(s)), s) }

// appendUnescaped appends s decoded as url.QueryUnescape decodes it to dst.
func appendUnescaped(dst, s []byte) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '%':
			if i+2 >= len(s) || hexValue[s[i+1]] > 0xf || hexValue[s[i+2]] > 0xf {
				return dst, url.EscapeError(s[i:min(i+3, len(s))])
			}
			dst = append(dst, hexValue[s[i+1]]<<4|hexValue[s[i+2]])
			i += 2
		case '+':
			dst = append(dst, ' ')
		default:
			dst = append(dst, c)
		}
	}
	return dst, nil
}

// errFormNotUTF8 is slashForm's error for a form that decodes to bytes
// that are not UTF-8.
var errFormNotUTF8 = errors.New("form is not valid UTF-8")

// slashForm reads a slash command's form body: each field of
// slack.SlashCommand is the first value of its key, as url.Values.Get gives
// it. It fails where url.ParseQuery fails (a semicolon in a field, a
// malformed escape in any field), and otherwise with errFormNotUTF8 when a
// key or value of any field decodes to bytes that are not UTF-8 (Slack
// sends only UTF-8; anything else would be stored mangled). One pass,
// decoding into one buffer: url.ParseQuery built a map of every field (a
// dozen, each a string and a slice), which a second loop then walked to
// check it, a tenth of the handler's work for `/sso-setup new` before its
// commit. Unlike url.ParseQuery it sets no limit on the number of fields,
// which it does not keep (the body's size is bounded before it is read).
func slashForm(body []byte) (slack.SlashCommand, error) {
	var (
		cmd     slack.SlashCommand
		formErr error
		notUTF8 bool
		set     uint16                       // bit i: the field slashFields[i] has its value
		buf     = make([]byte, 0, len(body)) // a field decodes to at most its length
	)
	keep := func(err error) {
		if formErr == nil {
			formErr = err
		}
	}
	fields := slashFields(&cmd)
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
		if buf, err = appendUnescaped(buf[:0], k); err != nil {
			keep(err)
			continue
		}
		keyLen := len(buf)
		if buf, err = appendUnescaped(buf, v); err != nil {
			keep(err)
			continue
		}
		key, value := buf[:keyLen], buf[keyLen:]
		if !utf8.Valid(key) || !utf8.Valid(value) {
			notUTF8 = true
			continue
		}
		for i, f := range fields {
			if f.key == string(key) {
				if set&(1<<i) == 0 {
					*f.dst, set = string(value), set|1<<i
				}
				break
			}
		}
	}
	switch {
	case formErr != nil:
		return slack.SlashCommand{}, formErr
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
