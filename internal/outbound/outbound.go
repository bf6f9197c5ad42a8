// Package outbound owns the one HTTP client for requests that leave the
// process towards addresses users choose: push gateways now, federation
// and URL previews later. It refuses loopback, private, link-local, CGNAT,
// multicast, documentation and other special-purpose addresses by default
// (an SSRF deny-list), checked on the IP actually dialed — after DNS, for
// every connection, redirects included — so a name that resolves to a
// private address, or re-resolves to one later (DNS rebinding), is refused
// too. A configured allow-list (CIDRs) exempts networks: tests and the
// conformance deployment allow loopback.
package outbound

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// ErrDenied is returned (wrapped) when a request would reach a refused
// address. It is permanent: retrying changes nothing until the allow-list
// does.
var ErrDenied = errors.New("destination address refused")

// ErrTooLarge is returned by a response body read past the size limit.
var ErrTooLarge = errors.New("response body too large")

// Options configure a Client. Zero values take the defaults noted.
type Options struct {
	// Allow are networks exempt from the deny-list.
	Allow []netip.Prefix
	// Timeout bounds a whole request, body read included (30 s).
	Timeout time.Duration
	// DialTimeout bounds connecting (10 s).
	DialTimeout time.Duration
	// MaxResponseBytes bounds a response body (1 MiB).
	MaxResponseBytes int64
	// MaxRedirects bounds redirects followed (3); each target is checked
	// like the first.
	MaxRedirects int
	// UserAgent is sent with every request.
	UserAgent string
}

// Client is the outbound HTTP client. It is safe for concurrent use.
type Client struct {
	http     *http.Client
	policy   policy
	maxBody  int64
	agent    string
	redirect int
}

// New builds a Client.
func New(opts Options) *Client {
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 10 * time.Second
	}
	if opts.MaxResponseBytes <= 0 {
		opts.MaxResponseBytes = 1 << 20
	}
	if opts.MaxRedirects <= 0 {
		opts.MaxRedirects = 3
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "Myelin"
	}
	c := &Client{policy: policy{allow: opts.Allow}, maxBody: opts.MaxResponseBytes, agent: opts.UserAgent, redirect: opts.MaxRedirects}
	dialer := &net.Dialer{
		Timeout:   opts.DialTimeout,
		KeepAlive: 30 * time.Second,
		// Control runs after name resolution, for the exact address about
		// to be connected: the one place the check cannot be bypassed by
		// DNS answers that change between a check and the connect.
		Control: func(network, address string, _ syscall.RawConn) error {
			return c.policy.checkDial(address)
		},
	}
	transport := &http.Transport{
		// No proxy from the environment: the check must see the real
		// destination, not a proxy's address.
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: opts.Timeout,
		ExpectContinueTimeout: time.Second,
	}
	c.http = &http.Client{
		Transport: transport,
		Timeout:   opts.Timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > c.redirect {
				return fmt.Errorf("stopped after %d redirects", c.redirect)
			}
			return c.checkURL(req)
		},
	}
	return c
}

// Do sends req. It fails fast (no connection attempted) for a URL that is
// not http(s) or whose host is a refused IP literal; a host name is checked
// on every address it resolves to when dialed. The response body is
// limited to the client's MaxResponseBytes: reading past it fails with
// ErrTooLarge. The caller closes the body.
func (c *Client) Do(req *http.Request) (*http.Response, error) {
	if err := c.checkURL(req); err != nil {
		return nil, err
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", c.agent)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > c.maxBody {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: %d bytes announced", ErrTooLarge, resp.ContentLength)
	}
	resp.Body = &limitedBody{rc: resp.Body, left: c.maxBody}
	return resp, nil
}

// CloseIdleConnections closes pooled connections (on shutdown).
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// Allowed reports whether ip may be contacted under this client's policy.
func (c *Client) Allowed(ip netip.Addr) bool { return c.policy.allowed(ip) }

func (c *Client) checkURL(req *http.Request) error {
	u := req.URL
	if u == nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("outbound: only absolute http(s) URLs are supported")
	}
	if ip, err := netip.ParseAddr(u.Hostname()); err == nil && !c.policy.allowed(ip) {
		return fmt.Errorf("outbound: %w", ErrDenied)
	}
	return nil
}

// limitedBody fails reads past the limit instead of truncating silently:
// a truncated JSON body must not parse as a shorter valid one.
type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (l *limitedBody) Read(p []byte) (int, error) {
	if l.left <= 0 {
		// One byte more tells a body of exactly the limit from a longer one.
		var one [1]byte
		n, err := l.rc.Read(one[:])
		if n > 0 {
			return 0, ErrTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.rc.Read(p)
	l.left -= int64(n)
	return n, err
}

func (l *limitedBody) Close() error { return l.rc.Close() }
