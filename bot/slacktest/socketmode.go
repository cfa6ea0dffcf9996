package slacktest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Socket Mode envelope types (the "type" of what Slack sends).
const (
	EnvelopeSlashCommands = "slash_commands"
	EnvelopeInteractive   = "interactive"
	EnvelopeEventsAPI     = "events_api"
)

const socketWriteTimeout = 5 * time.Second

var upgrader = websocket.Upgrader{
	// slack-go sends Origin: https://api.slack.com; any origin is fine here.
	CheckOrigin: func(*http.Request) bool { return true },
}

type socketConn struct {
	ws        *websocket.Conn
	writeMu   sync.Mutex // gorilla allows one concurrent writer
	closed    chan struct{}
	closeOnce sync.Once
}

func (c *socketConn) writeJSON(v any) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if err := c.ws.SetWriteDeadline(time.Now().Add(socketWriteTimeout)); err != nil {
		return err
	}
	return c.ws.WriteJSON(v)
}

func (c *socketConn) close() {
	c.closeOnce.Do(func() {
		close(c.closed)
		_ = c.ws.Close()
	})
}

type ack struct {
	done    chan struct{}
	acked   bool
	payload json.RawMessage
}

func (s *Server) appsConnectionsOpen(params) (result, *apiError) {
	s.ticketN++
	ticket := strconv.Itoa(s.ticketN)
	s.tickets[ticket] = true
	wsURL := "ws" + strings.TrimPrefix(s.srv.URL, "http") + socketPath + "?ticket=" + ticket
	return result{"url": wsURL}, nil
}

func (s *Server) serveSocket(w http.ResponseWriter, r *http.Request) {
	ticket := r.URL.Query().Get("ticket")
	s.mu.Lock()
	valid := s.tickets[ticket]
	delete(s.tickets, ticket)
	s.mu.Unlock()
	if !valid {
		http.Error(w, "invalid or used ticket", http.StatusUnauthorized)
		return
	}
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade has answered the client
	}
	c := &socketConn{ws: ws, closed: make(chan struct{})}
	hello := map[string]any{
		"type":            "hello",
		"num_connections": 1,
		"connection_info": map[string]any{"app_id": s.cfg.appID},
		"debug_info":      map[string]any{"host": "slacktest", "approximate_connection_time": 18060},
	}
	if err := c.writeJSON(hello); err != nil {
		c.close()
		return
	}
	// slack-go drops a connection that has not been pinged within its
	// interval, so ping at once and then regularly.
	if err := ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(socketWriteTimeout)); err != nil {
		c.close()
		return
	}

	s.mu.Lock()
	select {
	case <-s.done:
		s.mu.Unlock()
		c.close()
		return
	default:
	}
	s.sockets = append(s.sockets, c)
	s.recordLocked(Call{Method: MethodHello, JSON: hello, At: s.cfg.now()})
	// Close waits for both loops; it cannot have started waiting yet because
	// done is checked under the same lock.
	s.wg.Add(2)
	s.mu.Unlock()

	go func() {
		defer s.wg.Done()
		s.pingLoop(c)
	}()
	defer s.wg.Done()
	s.readLoop(c)
}

func (s *Server) pingLoop(c *socketConn) {
	t := time.NewTicker(s.cfg.pingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.closed:
			return
		case <-t.C:
			if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(socketWriteTimeout)); err != nil {
				c.close()
				return
			}
		}
	}
}

// readLoop records acknowledgements until the connection ends.
func (s *Server) readLoop(c *socketConn) {
	defer func() {
		c.close()
		s.mu.Lock()
		for i, sc := range s.sockets {
			if sc == c {
				s.sockets = append(s.sockets[:i], s.sockets[i+1:]...)
				break
			}
		}
		s.notifyLocked()
		s.mu.Unlock()
	}()
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		var msg struct {
			EnvelopeID string          `json:"envelope_id"`
			Payload    json.RawMessage `json:"payload"`
		}
		var body map[string]any
		perr := json.Unmarshal(data, &body)
		if perr == nil {
			perr = json.Unmarshal(data, &msg)
		}
		s.mu.Lock()
		call := Call{Method: MethodAck, JSON: body, At: s.cfg.now()}
		switch a := s.acks[msg.EnvelopeID]; {
		case perr != nil:
			call.Error = "invalid_json"
		case a == nil:
			call.Error = "unknown_envelope_id"
		case a.acked:
			call.Error = "duplicate_ack"
		default:
			a.acked = true
			if p := msg.Payload; len(p) > 0 && string(p) != "null" {
				a.payload = p
			}
			close(a.done)
		}
		s.recordLocked(call)
		s.mu.Unlock()
	}
}

// WaitConnected blocks until a Socket Mode client is connected (it has
// received its hello). While a client reconnects its old connection may
// still count; wait for a second MethodHello call to know the new one is up.
func (s *Server) WaitConnected(ctx context.Context) error {
	for {
		s.mu.Lock()
		n := len(s.sockets)
		changed := s.changed
		s.mu.Unlock()
		if n > 0 {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("wait for socket mode connection: %w", ctx.Err())
		case <-s.done:
			return ErrClosed
		}
	}
}

// SendEnvelope sends an envelope of type typ (EnvelopeSlashCommands,
// EnvelopeInteractive...) carrying payload to the newest Socket Mode
// connection, waiting for one if none is open, and returns its envelope_id.
// payload is marshalled as the envelope's payload: pass a SlashCommand,
// BlockActionsJSON(...), ViewSubmissionJSON(...) or any JSON-able value.
// The envelope is recorded as a call with Method MethodEnvelope.
func (s *Server) SendEnvelope(ctx context.Context, typ string, payload any) (string, error) {
	pl, err := json.Marshal(payload)
	if err != nil {
		return "", fmt.Errorf("marshal %s payload: %w", typ, err)
	}
	for {
		s.mu.Lock()
		if n := len(s.sockets); n > 0 {
			c := s.sockets[n-1]
			s.envSeq++
			id := fmt.Sprintf("00000000-0000-4000-8000-%012d", s.envSeq)
			env := map[string]any{
				"envelope_id":              id,
				"type":                     typ,
				"payload":                  json.RawMessage(pl),
				"accepts_response_payload": typ != EnvelopeEventsAPI,
				"retry_attempt":            0,
				"retry_reason":             "",
			}
			s.acks[id] = &ack{done: make(chan struct{})}
			var decoded any
			_ = json.Unmarshal(pl, &decoded)
			recorded := map[string]any{}
			for k, v := range env {
				recorded[k] = v
			}
			recorded["payload"] = decoded
			s.recordLocked(Call{Method: MethodEnvelope, JSON: recorded, At: s.cfg.now()})
			s.mu.Unlock()
			if err := c.writeJSON(env); err != nil {
				return id, fmt.Errorf("send %s envelope: %w", typ, err)
			}
			return id, nil
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return "", fmt.Errorf("send %s envelope: no socket mode connection: %w", typ, ctx.Err())
		case <-s.done:
			return "", ErrClosed
		}
	}
}

// WaitAck blocks until the client acknowledges the envelope and returns the
// ack's payload (nil when the ack carried none).
func (s *Server) WaitAck(ctx context.Context, envelopeID string) (json.RawMessage, error) {
	s.mu.Lock()
	a := s.acks[envelopeID]
	s.mu.Unlock()
	if a == nil {
		return nil, fmt.Errorf("wait ack %s: %w", envelopeID, ErrNotFound)
	}
	select {
	case <-a.done:
		s.mu.Lock()
		defer s.mu.Unlock()
		return a.payload, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("wait ack %s: %w", envelopeID, ctx.Err())
	case <-s.done:
		return nil, ErrClosed
	}
}

// SendDisconnect asks every connected client to reconnect, as Slack does
// when it refreshes connections (reason e.g. "refresh_requested").
func (s *Server) SendDisconnect(reason string) error {
	s.mu.Lock()
	socks := append([]*socketConn(nil), s.sockets...)
	s.mu.Unlock()
	for _, c := range socks {
		msg := map[string]any{"type": "disconnect", "reason": reason, "debug_info": map[string]any{"host": "slacktest"}}
		if err := c.writeJSON(msg); err != nil {
			return fmt.Errorf("send disconnect: %w", err)
		}
	}
	return nil
}

// DropSocketConnections closes every Socket Mode connection abruptly, like a
// network failure.
func (s *Server) DropSocketConnections() {
	s.mu.Lock()
	socks := append([]*socketConn(nil), s.sockets...)
	s.mu.Unlock()
	for _, c := range socks {
		c.close()
	}
}
