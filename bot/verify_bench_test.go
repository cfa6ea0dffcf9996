package bot

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ssobot/ssobot/bot/slacktest"
	"github.com/ssobot/ssobot/workflow"
)

// BenchmarkVerify is the signature check every Slack request pays, for a
// slash command and for a click payload of a typical size.
func BenchmarkVerify(b *testing.B) {
	secret := workflow.NewSecret("8f742231b10e8888abcd99yyyzzz85a5")
	for _, size := range []int{400, 8 << 10} {
		b.Run(strconv.Itoa(size)+"B", func(b *testing.B) {
			body := []byte("payload=" + strings.Repeat("x", size-len("payload=")))
			now := time.Now()
			h := http.Header{}
			h.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
			h.Set(HeaderSignature, slacktest.Sign(secret.Reveal(), now, body))
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if err := Verify(h, body, secret, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
