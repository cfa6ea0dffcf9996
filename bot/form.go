package bot

import (
	"bytes"
	"errors"
	"net/url"
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
func formUnescape(s []byte) ([]byte, error) {
	out := make([]byte, len(s)) // never longer than s
	n := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '%':
			if i+2 >= len(s) || hexValue[s[i+1]] > 0xf || hexValue[s[i+2]] > 0xf {
				return nil, url.EscapeError(s[i:min(i+3, len(s))])
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
