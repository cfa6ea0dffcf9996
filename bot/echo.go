package bot

import (
	"bytes"
	"io"
	"net/http"
	"strings"

	"github.com/tidwall/gjson"
)

// WithoutEchoes wraps the transport of the bot's Slack client. Slack answers
// chat.postMessage and chat.update with a copy of the message as posted,
// blocks and all, and slack-go decodes that copy into typed blocks, which
// the bot never reads (it keeps the channel and ts): a third of the CPU of
// the bot's deliveries in profiles of `ssobot bench`, most of it when a
// gate's card goes out. The transport blanks the copy (`"message":null`)
// before slack-go decodes the answer; everything else passes as it came.
// So an echo slack-go fails to decode no longer turns a message Slack
// posted into an error, which the bot would retry: a second message.
func WithoutEchoes(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := next.RoundTrip(r)
		if err != nil || resp.StatusCode != http.StatusOK || !echoesMessage(r.URL.Path) {
			return resp, err
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxEchoedAnswer+1))
		if err != nil {
			resp.Body.Close()
			return nil, err
		}
		if len(body) > maxEchoedAnswer {
			// Not an answer worth holding in memory: slack-go gets it whole.
			resp.Body = struct {
				io.Reader
				io.Closer
			}{io.MultiReader(bytes.NewReader(body), resp.Body), resp.Body}
			return resp, nil
		}
		resp.Body.Close()
		body = withoutEcho(body)
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
		resp.Header.Del("Content-Length")
		return resp, nil
	})
}

// maxEchoedAnswer bounds the answers WithoutEchoes reads into memory: a
// message of 50 blocks of 3,000 characters is well under it.
const maxEchoedAnswer = 1 << 20

// echoesMessage reports whether the Web API method at path answers with a
// copy of the message.
func echoesMessage(path string) bool {
	return strings.HasSuffix(path, "/chat.postMessage") || strings.HasSuffix(path, "/chat.update")
}

// withoutEcho returns the answer with its top-level "message" object
// replaced by null (in place), or as it is when it has none.
func withoutEcho(body []byte) []byte {
	m := gjson.GetBytes(body, "message")
	end := m.Index + len(m.Raw)
	if !m.IsObject() || m.Index <= 0 || end > len(body) || string(body[m.Index:end]) != m.Raw {
		return body
	}
	rest := body[end:]
	n := copy(body[m.Index:], "null")
	return append(body[:m.Index+n], rest...)
}
