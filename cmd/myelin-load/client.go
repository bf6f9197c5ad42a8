package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"
)

// The client is plain net/http + encoding/json on purpose: a Matrix client
// library on the hot path would add its own costs (and its own retries) to
// every figure, and the tool must measure the server, not itself.

const (
	// maxBody bounds what the tool reads from one response.
	maxBody = 64 << 20
	// maxRateLimitRetries bounds the retries of one request after 429.
	maxRateLimitRetries = 20
	// maxRetryWait caps one honoured retry_after_ms.
	maxRetryWait = 30 * time.Second
)

// matrixError is a non-2xx answer: the status, the standard error body, and
// the raw body (user-interactive auth puts its session and flows there).
type matrixError struct {
	Status       int
	Code         string
	Msg          string
	RetryAfterMS int64
	Body         []byte
}

func (e *matrixError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("HTTP %d", e.Status)
	}
	return fmt.Sprintf("HTTP %d %s: %s", e.Status, e.Code, e.Msg)
}

// client talks to one homeserver through the Client-Server API.
type client struct {
	base        string // scheme://host[:port][/prefix], no trailing slash
	hc          *http.Client
	timeout     time.Duration // per request, long polls add their own timeout
	rateLimited atomic.Int64  // 429 M_LIMIT_EXCEEDED answers honoured
	requests    atomic.Int64  // HTTP requests sent
}

// newClient builds a client with a transport sized for the load: keep-alive
// with enough idle connections per host for every sender and long poll, no
// proxy, no compression (the figures should not include gzip), no redirects,
// and a dialer that connects to loopback addresses only.
func newClient(base string, timeout time.Duration) *client {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second, Control: dialLoopbackOnly}
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         dialer.DialContext,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
		TLSHandshakeTimeout: 5 * time.Second,
	}
	return &client{
		base:    base,
		timeout: timeout,
		hc: &http.Client{
			Transport: tr,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
	}
}

func (c *client) close() { c.hc.CloseIdleConnections() }

// request is one API call. Path is already escaped.
type request struct {
	method  string
	path    string
	query   url.Values
	token   string
	body    any           // JSON-encoded when not nil
	out     any           // JSON-decoded from a 2xx answer when not nil
	timeout time.Duration // overrides client.timeout when > 0
}

// do sends r, honouring 429 M_LIMIT_EXCEEDED by waiting retry_after_ms (or
// Retry-After) and retrying, at most maxRateLimitRetries times. Other non-2xx
// answers come back as *matrixError.
func (c *client) do(ctx context.Context, r request) error {
	var payload []byte
	if r.body != nil {
		var err error
		if payload, err = json.Marshal(r.body); err != nil {
			return fmt.Errorf("encode %s body: %w", r.path, err)
		}
	}
	target := c.base + r.path
	if len(r.query) > 0 {
		target += "?" + r.query.Encode()
	}
	timeout := c.timeout
	if r.timeout > 0 {
		timeout = r.timeout
	}
	for attempt := 0; ; attempt++ {
		status, body, header, err := c.roundTrip(ctx, r.method, target, r.token, payload, timeout)
		if err != nil {
			return fmt.Errorf("%s %s: %w", r.method, r.path, err)
		}
		if status >= 200 && status < 300 {
			if r.out != nil {
				if err := json.Unmarshal(body, r.out); err != nil {
					return fmt.Errorf("%s %s: decode answer: %w", r.method, r.path, err)
				}
			}
			return nil
		}
		me := &matrixError{Status: status, Body: body}
		var eb struct {
			Code         string `json:"errcode"`
			Msg          string `json:"error"`
			RetryAfterMS int64  `json:"retry_after_ms"`
		}
		if json.Unmarshal(body, &eb) == nil {
			me.Code, me.Msg, me.RetryAfterMS = eb.Code, eb.Msg, eb.RetryAfterMS
		}
		if status != http.StatusTooManyRequests || attempt >= maxRateLimitRetries {
			return fmt.Errorf("%s %s: %w", r.method, r.path, me)
		}
		c.rateLimited.Add(1)
		if err := sleep(ctx, retryWait(me.RetryAfterMS, header.Get("Retry-After"))); err != nil {
			return fmt.Errorf("%s %s: waiting after 429: %w", r.method, r.path, err)
		}
	}
}

// retryWait is how long to wait after a 429: retry_after_ms from the body,
// else Retry-After (seconds), else one second; capped at maxRetryWait.
func retryWait(retryAfterMS int64, header string) time.Duration {
	d := time.Second
	if retryAfterMS > 0 {
		d = time.Duration(retryAfterMS) * time.Millisecond
	} else if s, err := strconv.Atoi(header); err == nil && s >= 0 {
		d = time.Duration(s) * time.Second
	}
	return min(d, maxRetryWait)
}

func (c *client) roundTrip(ctx context.Context, method, target, token string, payload []byte, timeout time.Duration) (int, []byte, http.Header, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return 0, nil, nil, err
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c.requests.Add(1)
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	// Read to the end so the connection goes back to the idle pool.
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("read answer: %w", err)
	}
	return resp.StatusCode, data, resp.Header, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// user is an account the tool registered and holds a token for.
type user struct {
	ID    string
	Token string
}

type sessionAnswer struct {
	UserID      string `json:"user_id"`
	AccessToken string `json:"access_token"`
}

const stageDummy = "m.login.dummy"

// registerDummy registers through POST /register with user-interactive auth:
// the first request (no auth) answers 401 with a session and the flows, the
// second completes the m.login.dummy stage. A server that creates the account
// at once (no UIA) is accepted too.
func (c *client) registerDummy(ctx context.Context, username, password string) (*user, error) {
	body := map[string]any{
		"username":                    username,
		"password":                    password,
		"initial_device_display_name": "myelin-load",
	}
	var ok sessionAnswer
	err := c.do(ctx, request{method: http.MethodPost, path: "/_matrix/client/v3/register", body: body, out: &ok})
	if err == nil {
		return ok.user()
	}
	var me *matrixError
	if !errors.As(err, &me) || me.Status != http.StatusUnauthorized {
		return nil, err
	}
	var uia struct {
		Session string `json:"session"`
		Flows   []struct {
			Stages []string `json:"stages"`
		} `json:"flows"`
	}
	if err := json.Unmarshal(me.Body, &uia); err != nil {
		return nil, fmt.Errorf("register: 401 without a UIA body: %w", err)
	}
	offered := false
	for _, f := range uia.Flows {
		if len(f.Stages) == 1 && f.Stages[0] == stageDummy {
			offered = true
		}
	}
	if !offered {
		return nil, fmt.Errorf("register: the server offers no %s-only flow (is open registration enabled? use --shared-secret otherwise)", stageDummy)
	}
	auth := map[string]any{"type": stageDummy}
	if uia.Session != "" {
		auth["session"] = uia.Session
	}
	body["auth"] = auth
	if err := c.do(ctx, request{method: http.MethodPost, path: "/_matrix/client/v3/register", body: body, out: &ok}); err != nil {
		return nil, err
	}
	return ok.user()
}

// registerSharedSecret uses Synapse's admin registration: a nonce, then the
// account with mac = hex(HMAC-SHA1(secret, nonce NUL user NUL password NUL
// "notadmin")).
func (c *client) registerSharedSecret(ctx context.Context, secret, username, password string) (*user, error) {
	var n struct {
		Nonce string `json:"nonce"`
	}
	const path = "/_synapse/admin/v1/register"
	if err := c.do(ctx, request{method: http.MethodGet, path: path, out: &n}); err != nil {
		return nil, err
	}
	var ok sessionAnswer
	body := map[string]any{
		"nonce": n.Nonce, "username": username, "password": password, "admin": false,
		"mac": sharedSecretMAC(secret, n.Nonce, username, password),
	}
	if err := c.do(ctx, request{method: http.MethodPost, path: path, body: body, out: &ok}); err != nil {
		return nil, err
	}
	return ok.user()
}

func sharedSecretMAC(secret, nonce, username, password string) string {
	m := hmac.New(sha1.New, []byte(secret))
	for _, part := range []string{nonce, username, password} {
		m.Write([]byte(part))
		m.Write([]byte{0})
	}
	m.Write([]byte("notadmin"))
	return hex.EncodeToString(m.Sum(nil))
}

func (s sessionAnswer) user() (*user, error) {
	if s.UserID == "" || s.AccessToken == "" {
		return nil, errors.New("register: answer has no user_id or access_token")
	}
	return &user{ID: s.UserID, Token: s.AccessToken}, nil
}

// createRoom creates a public room and returns its ID.
func (c *client) createRoom(ctx context.Context, u *user, name string) (string, error) {
	body := map[string]any{"preset": "public_chat"}
	if name != "" {
		body["name"] = name
	}
	var out struct {
		RoomID string `json:"room_id"`
	}
	if err := c.do(ctx, request{method: http.MethodPost, path: "/_matrix/client/v3/createRoom", token: u.Token, body: body, out: &out}); err != nil {
		return "", err
	}
	if out.RoomID == "" {
		return "", errors.New("createRoom: answer has no room_id")
	}
	return out.RoomID, nil
}

// join joins a room by ID.
func (c *client) join(ctx context.Context, u *user, roomID string) error {
	var out struct {
		RoomID string `json:"room_id"`
	}
	if err := c.do(ctx, request{method: http.MethodPost, path: "/_matrix/client/v3/join/" + url.PathEscape(roomID), token: u.Token, body: map[string]any{}, out: &out}); err != nil {
		return err
	}
	if out.RoomID != roomID {
		return fmt.Errorf("join: answer room_id %q, want %q", out.RoomID, roomID)
	}
	return nil
}

// send puts one m.room.message and returns its event ID.
func (c *client) send(ctx context.Context, u *user, roomID, txnID string, content any) (string, error) {
	var out struct {
		EventID string `json:"event_id"`
	}
	path := "/_matrix/client/v3/rooms/" + url.PathEscape(roomID) + "/send/m.room.message/" + url.PathEscape(txnID)
	if err := c.do(ctx, request{method: http.MethodPut, path: path, token: u.Token, body: content, out: &out}); err != nil {
		return "", err
	}
	if out.EventID == "" {
		return "", errors.New("send: answer has no event_id")
	}
	return out.EventID, nil
}

// syncAnswer is the part of a /sync answer the tool reads.
type syncAnswer struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join map[string]struct {
			Timeline struct {
				Events  []clientEvent `json:"events"`
				Limited bool          `json:"limited"`
			} `json:"timeline"`
		} `json:"join"`
	} `json:"rooms"`
}

type clientEvent struct {
	EventID string          `json:"event_id"`
	Type    string          `json:"type"`
	Content json.RawMessage `json:"content"`
}

// sync calls GET /sync. since == "" is an initial sync; timeout is the long
// poll in milliseconds; filter is inline filter JSON.
func (c *client) sync(ctx context.Context, u *user, since string, timeoutMS int, filter string) (*syncAnswer, error) {
	q := url.Values{"timeout": {strconv.Itoa(timeoutMS)}}
	if since != "" {
		q.Set("since", since)
	}
	if filter != "" {
		q.Set("filter", filter)
	}
	var out syncAnswer
	// The long poll itself may take timeoutMS; the request timeout is on top.
	err := c.do(ctx, request{method: http.MethodGet, path: "/_matrix/client/v3/sync", query: q, token: u.Token, out: &out,
		timeout: c.timeout + time.Duration(timeoutMS)*time.Millisecond})
	if err != nil {
		return nil, err
	}
	if out.NextBatch == "" {
		return nil, errors.New("sync: answer has no next_batch")
	}
	return &out, nil
}

// messagesAnswer is a /messages page.
type messagesAnswer struct {
	Chunk []clientEvent `json:"chunk"`
	Start string        `json:"start"`
	End   string        `json:"end"`
}

// messages fetches one page of room history, backwards from `from` (the end
// of the timeline when empty, as the spec allows since v1.3).
func (c *client) messages(ctx context.Context, u *user, roomID, from string, limit int) (*messagesAnswer, error) {
	q := url.Values{"dir": {"b"}, "limit": {strconv.Itoa(limit)}}
	if from != "" {
		q.Set("from", from)
	}
	var out messagesAnswer
	path := "/_matrix/client/v3/rooms/" + url.PathEscape(roomID) + "/messages"
	if err := c.do(ctx, request{method: http.MethodGet, path: path, query: q, token: u.Token, out: &out}); err != nil {
		return nil, err
	}
	return &out, nil
}
