package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"syscall"
)

// lookupFunc resolves a host name; net.DefaultResolver.LookupIPAddr in the
// tool, a table in the tests.
type lookupFunc func(ctx context.Context, host string) ([]net.IPAddr, error)

// checkBaseURL parses the homeserver base URL and refuses anything that does
// not resolve only to loopback addresses. Load tools aimed at someone else's
// server are a denial of service; this workplace allows loopback targets only.
// A name must resolve to at least one address and every address must be
// loopback, so a name that mixes a loopback and a routable address is refused.
func checkBaseURL(ctx context.Context, lookup lookupFunc, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("base URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("base URL %q: scheme must be http or https", raw)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("base URL %q: no user info, query or fragment allowed", raw)
	}
	host := u.Hostname()
	if host == "" {
		return nil, fmt.Errorf("base URL %q: no host", raw)
	}
	if ip := net.ParseIP(host); ip != nil {
		if !ip.IsLoopback() {
			return nil, fmt.Errorf("base URL %q: %s is not a loopback address; only loopback targets are allowed", raw, host)
		}
	} else {
		addrs, err := lookup(ctx, host)
		if err != nil {
			return nil, fmt.Errorf("base URL %q: resolve %s: %w", raw, host, err)
		}
		if len(addrs) == 0 {
			return nil, fmt.Errorf("base URL %q: %s resolves to no address", raw, host)
		}
		for _, a := range addrs {
			if !a.IP.IsLoopback() {
				return nil, fmt.Errorf("base URL %q: %s resolves to %s, which is not loopback; only loopback targets are allowed", raw, host, a.IP)
			}
		}
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

var errNotLoopback = errors.New("refusing to connect to a non-loopback address")

// dialLoopbackOnly is the dialer's Control hook: it sees the resolved address
// right before connect, so neither a DNS answer that changed since
// checkBaseURL nor a redirect can take the tool off the machine.
func dialLoopbackOnly(network, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s", errNotLoopback, address)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%w: %s", errNotLoopback, address)
	}
	return nil
}
