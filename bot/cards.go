package bot

import (
	"encoding/json"
	"sync"

	"github.com/slack-go/slack"

	"github.com/ssobot/ssobot/workflow"
)

// statusCards remembers, for each recently asked run, the status card last
// encoded for it and the run version it shows. Building the card's blocks
// and encoding them was about 70 % of the CPU a `status` acknowledgement took
// (CPU profile of `ssobot bench --only ack`): a run asked about again before
// it changes is answered with the same bytes.
//
// The card is a function of the run alone (the links come from the
// configuration, people are shown as mentions, dates as Slack's date
// tokens, which each client renders in its reader's time zone), and every
// write of a run bumps its Version, so an entry is used only for the
// version it was made from. Who may see the run is checked on every
// request, before the card is looked up.
type statusCards struct {
	mu      sync.Mutex
	entries map[int64]statusCard
	max     int
}

type statusCard struct {
	version uint64
	encoded []byte // the whole reply, never changed once stored
}

// statusCardsKept bounds the memo: a card is a few kB.
const statusCardsKept = 256

func newStatusCards(max int) *statusCards {
	return &statusCards{entries: make(map[int64]statusCard), max: max}
}

// reply returns the private status reply for r, encoded, from the memo
// when r has not changed since it was made.
func (c *statusCards) reply(r *workflow.Run, render func(*workflow.Run) []slack.Block) (*reply, error) {
	c.mu.Lock()
	e, ok := c.entries[r.ID]
	c.mu.Unlock()
	if ok && e.version == r.Version {
		return &reply{encoded: e.encoded}, nil
	}
	encoded, err := json.Marshal(replyFields{ResponseType: slack.ResponseTypeEphemeral, Text: FallbackText(r), Blocks: render(r)})
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[r.ID]; !ok && len(c.entries) >= c.max {
		for id := range c.entries { // any one: map order is unspecified
			delete(c.entries, id)
			break
		}
	}
	c.entries[r.ID] = statusCard{version: r.Version, encoded: encoded}
	return &reply{encoded: encoded}, nil
}

func (c *statusCards) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
