package outbound

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestPolicy(t *testing.T) {
	loopback, err := ParseNetworks([]string{"127.0.0.0/8", "::1"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ip      string
		allow   []netip.Prefix
		allowed bool
	}{
		{"8.8.8.8", nil, true},
		{"1.1.1.1", nil, true},
		{"2606:4700:4700::1111", nil, true},
		{"64:ff9b::808:808", nil, true}, // NAT64 of 8.8.8.8
		{"127.0.0.1", nil, false},
		{"127.255.255.254", nil, false},
		{"::1", nil, false},
		{"::", nil, false},
		{"0.0.0.0", nil, false},
		{"0.1.2.3", nil, false},
		{"10.0.0.1", nil, false},
		{"172.16.0.1", nil, false},
		{"172.31.255.255", nil, false},
		{"172.32.0.1", nil, true},
		{"192.168.1.1", nil, false},
		{"100.64.0.1", nil, false},
		{"100.127.255.255", nil, false},
		{"100.128.0.1", nil, true},
		{"169.254.169.254", nil, false},
		{"224.0.0.1", nil, false},
		{"239.255.255.250", nil, false},
		{"255.255.255.255", nil, false},
		{"192.0.2.1", nil, false},
		{"198.18.0.1", nil, false},
		{"fc00::1", nil, false},
		{"fd12:3456::1", nil, false},
		{"fe80::1", nil, false},
		{"fe80::1%eth0", nil, false},
		{"ff02::1", nil, false},
		{"2001:db8::1", nil, false},
		{"2002:a00:1::1", nil, false},
		{"2001:0:4136:e378::1", nil, false},
		{"::ffff:127.0.0.1", nil, false},
		{"::ffff:10.0.0.1", nil, false},
		{"::ffff:169.254.169.254", nil, false},
		{"::ffff:8.8.8.8", nil, true},
		{"::127.0.0.1", nil, false},     // IPv4-compatible
		{"64:ff9b::a00:1", nil, false},  // NAT64 of 10.0.0.1
		{"64:ff9b::7f00:1", nil, false}, // NAT64 of 127.0.0.1
		{"64:ff9b:1::1", nil, false},    // local-use NAT64
		{"127.0.0.1", loopback, true},   // the test and conformance allow-list
		{"::ffff:127.0.0.1", loopback, true},
		{"::1", loopback, true},
		{"10.0.0.1", loopback, false}, // the allow-list exempts only itself
		{"169.254.169.254", loopback, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/allow%d", tt.ip, len(tt.allow)), func(t *testing.T) {
			ip := netip.MustParseAddr(tt.ip)
			if got := (policy{allow: tt.allow}).allowed(ip); got != tt.allowed {
				t.Fatalf("allowed(%s) = %v, want %v", tt.ip, got, tt.allowed)
			}
			port := "443"
			err := (policy{allow: tt.allow}).checkDial(net.JoinHostPort(ip.String(), port))
			if (err == nil) != tt.allowed || (err != nil && !errors.Is(err, ErrDenied)) {
				t.Fatalf("checkDial(%s) = %v, want allowed %v", tt.ip, err, tt.allowed)
			}
		})
	}
}

func TestParseNetworks(t *testing.T) {
	tests := []struct {
		in   []string
		want []string
		bad  bool
	}{
		{nil, nil, false},
		{[]string{"127.0.0.0/8"}, []string{"127.0.0.0/8"}, false},
		{[]string{"10.1.2.3/8"}, []string{"10.0.0.0/8"}, false},
		{[]string{"192.168.1.5"}, []string{"192.168.1.5/32"}, false},
		{[]string{"::1"}, []string{"::1/128"}, false},
		{[]string{"fd00::/8"}, []string{"fd00::/8"}, false},
		{[]string{"nope"}, nil, true},
		{[]string{"10.0.0.0/33"}, nil, true},
		{[]string{""}, nil, true},
	}
	for _, tt := range tests {
		got, err := ParseNetworks(tt.in)
		if (err != nil) != tt.bad {
			t.Errorf("ParseNetworks(%q) error %v, want bad %v", tt.in, err, tt.bad)
			continue
		}
		var s []string
		for _, p := range got {
			s = append(s, p.String())
		}
		if fmt.Sprint(s) != fmt.Sprint(tt.want) {
			t.Errorf("ParseNetworks(%q) = %v, want %v", tt.in, s, tt.want)
		}
	}
}

// server is a loopback HTTP server counting the requests it received.
func server(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func get(t *testing.T, c *Client, url string) (*http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c.Do(req)
}

func TestClientRefusesAndAllows(t *testing.T) {
	ok := func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "hello") }
	srv, hits := server(t, ok)
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	loopback, _ := ParseNetworks([]string{"127.0.0.0/8"})
	only1, _ := ParseNetworks([]string{"127.0.0.1"})

	tests := []struct {
		name   string
		allow  []netip.Prefix
		url    string
		denied bool
	}{
		{"loopback literal refused by default", nil, srv.URL, true},
		{"localhost name refused on the dialed IP", nil, fmt.Sprintf("http://localhost:%d/", port), true},
		{"IPv4-mapped loopback refused", nil, fmt.Sprintf("http://[::ffff:127.0.0.1]:%d/", port), true},
		{"loopback allowed by the allow-list", loopback, srv.URL, false},
		{"localhost allowed by the allow-list", loopback, fmt.Sprintf("http://localhost:%d/", port), false},
		{"a single allowed address", only1, srv.URL, false},
		{"metadata address refused even with loopback allowed", loopback, "http://169.254.169.254/latest/meta-data/", true},
		{"private address refused", loopback, "http://10.0.0.1/_matrix/push/v1/notify", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := hits.Load()
			start := time.Now()
			resp, err := get(t, New(Options{Allow: tt.allow}), tt.url)
			if tt.denied {
				if !errors.Is(err, ErrDenied) {
					t.Fatalf("want ErrDenied, got %v", err)
				}
				// Refused before any connection: no timeout was waited out.
				if d := time.Since(start); d > 2*time.Second {
					t.Fatalf("refusal took %v", d)
				}
				if hits.Load() != before {
					t.Fatal("the server was contacted")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil || string(b) != "hello" {
				t.Fatalf("body %q %v", b, err)
			}
		})
	}
}

func TestClientRefusesRedirectToDenied(t *testing.T) {
	// The target listens on 127.0.0.2 (loopback, not in the allow-list).
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("127.0.0.2 not available: %v", err)
	}
	var targetHits atomic.Int64
	target := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		targetHits.Add(1)
	})}}
	target.Start()
	defer target.Close()
	redirector, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/secret", http.StatusFound)
	})
	only, _ := ParseNetworks([]string{"127.0.0.1"})
	_, err = get(t, New(Options{Allow: only}), redirector.URL)
	if !errors.Is(err, ErrDenied) {
		t.Fatalf("redirect to 127.0.0.2: want ErrDenied, got %v", err)
	}
	if targetHits.Load() != 0 {
		t.Fatal("the redirect target was contacted")
	}
}

func TestClientLimits(t *testing.T) {
	loopback, _ := ParseNetworks([]string{"127.0.0.0/8"})
	big := strings.Repeat("x", 2048)
	tests := []struct {
		name    string
		handler http.HandlerFunc
		opts    Options
		wantErr error // from Do or from reading the body
		body    string
	}{
		{"body within the limit", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, big) },
			Options{MaxResponseBytes: 2048}, nil, big},
		{"announced body over the limit", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, big) },
			Options{MaxResponseBytes: 1024}, ErrTooLarge, ""},
		{"streamed body over the limit", func(w http.ResponseWriter, r *http.Request) {
			w.(http.Flusher).Flush() // chunked: no Content-Length
			_, _ = io.WriteString(w, big)
		}, Options{MaxResponseBytes: 1024}, ErrTooLarge, ""},
		{"timeout", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(3 * time.Second):
			}
		}, Options{Timeout: 200 * time.Millisecond}, context.DeadlineExceeded, ""},
		{"too many redirects", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/again", http.StatusFound) },
			Options{MaxRedirects: 2}, errors.New("stopped after 2 redirects"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := server(t, tt.handler)
			tt.opts.Allow = loopback
			resp, err := get(t, New(tt.opts), srv.URL)
			var body []byte
			if err == nil {
				body, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tt.wantErr == nil && string(body) != tt.body:
				t.Fatalf("body %d bytes, want %d", len(body), len(tt.body))
			case tt.wantErr != nil && err == nil:
				t.Fatalf("want error %v, got none", tt.wantErr)
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr) && !strings.Contains(err.Error(), tt.wantErr.Error()) && !isTimeout(err):
				t.Fatalf("want %v, got %v", tt.wantErr, err)
			}
		})
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestClientRefusesOtherSchemes(t *testing.T) {
	c := New(Options{})
	for _, u := range []string{"file:///etc/passwd", "ftp://example.org/", "gopher://example.org/"} {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		if _, err := c.Do(req); err == nil {
			t.Errorf("%s: want an error", u)
		}
	}
}
