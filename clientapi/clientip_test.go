package clientapi

import (
	"net/http/httptest"
	"testing"

	"myelin/config"
)

func TestClientIP(t *testing.T) {
	nets, err := config.Listeners{TrustedProxies: []string{"10.0.0.1", "172.16.0.0/12"}}.TrustedProxyNets()
	if err != nil {
		t.Fatal(err)
	}
	trusting := &api{proxies: nets}
	plain := &api{}
	for _, tc := range []struct {
		name   string
		a      *api
		remote string
		xff    []string
		want   string
	}{
		{"no proxies configured", plain, "10.0.0.1:5000", []string{"203.0.113.9"}, "10.0.0.1"},
		{"untrusted peer", trusting, "198.51.100.4:5000", []string{"203.0.113.9"}, "198.51.100.4"},
		{"trusted peer, one hop", trusting, "10.0.0.1:5000", []string{"203.0.113.9"}, "203.0.113.9"},
		{"spoofed left entries ignored", trusting, "10.0.0.1:5000", []string{"1.2.3.4, 203.0.113.9"}, "203.0.113.9"},
		{"chain of trusted proxies", trusting, "10.0.0.1:5000", []string{"203.0.113.9, 172.16.5.5"}, "203.0.113.9"},
		{"several headers", trusting, "10.0.0.1:5000", []string{"203.0.113.9", "172.20.0.1"}, "203.0.113.9"},
		{"all trusted", trusting, "10.0.0.1:5000", []string{"172.16.0.2"}, "172.16.0.2"},
		{"malformed hop", trusting, "10.0.0.1:5000", []string{"203.0.113.9, garbage"}, "10.0.0.1"},
		{"no header", trusting, "10.0.0.1:5000", nil, "10.0.0.1"},
		{"ipv6 peer", plain, "[2001:db8::2]:443", nil, "2001:db8::2"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tc.remote
		for _, h := range tc.xff {
			r.Header.Add("X-Forwarded-For", h)
		}
		if got := tc.a.clientIP(r); got != tc.want {
			t.Errorf("%s: clientIP = %q, want %q", tc.name, got, tc.want)
		}
	}
}
