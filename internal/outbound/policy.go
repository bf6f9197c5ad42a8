package outbound

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// denied are the networks refused by default: everything that is not a
// public unicast destination. IPv4-mapped IPv6 addresses are unmapped
// before the check, so ::ffff:10.0.0.1 is judged as 10.0.0.1.
var denied = mustPrefixes(
	// IPv4
	"0.0.0.0/8",       // "this network", includes the unspecified address
	"10.0.0.0/8",      // RFC 1918 private
	"100.64.0.0/10",   // RFC 6598 carrier-grade NAT
	"127.0.0.0/8",     // loopback
	"169.254.0.0/16",  // link-local (cloud metadata lives at 169.254.169.254)
	"172.16.0.0/12",   // RFC 1918 private
	"192.0.0.0/24",    // IETF protocol assignments
	"192.0.2.0/24",    // TEST-NET-1
	"192.88.99.0/24",  // 6to4 relay anycast
	"192.168.0.0/16",  // RFC 1918 private
	"198.18.0.0/15",   // benchmarking
	"198.51.100.0/24", // TEST-NET-2
	"203.0.113.0/24",  // TEST-NET-3
	"224.0.0.0/4",     // multicast
	"240.0.0.0/4",     // reserved, includes broadcast 255.255.255.255
	// IPv6
	"::/96",          // unspecified, loopback (::1) and IPv4-compatible
	"64:ff9b:1::/48", // local-use NAT64
	"100::/64",       // discard-only
	"2001::/32",      // Teredo: tunnels to an embedded, obfuscated IPv4
	"2001:db8::/32",  // documentation
	"2002::/16",      // 6to4: tunnels to an embedded IPv4
	"fc00::/7",       // RFC 4193 unique local
	"fe80::/10",      // link-local
	"fec0::/10",      // deprecated site-local
	"ff00::/8",       // multicast
)

// nat64 is the well-known NAT64 prefix: its addresses reach the IPv4
// address in their last 32 bits, which is judged instead (IPv6-only
// networks with DNS64 reach every IPv4 host this way).
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// ParseNetworks parses allow-list entries: CIDRs or bare IP addresses
// (a single-address network).
func ParseNetworks(entries []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if !strings.Contains(e, "/") {
			a, err := netip.ParseAddr(e)
			if err != nil {
				return nil, fmt.Errorf("%q is not an IP address or CIDR", e)
			}
			a = a.Unmap()
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(e)
		if err != nil {
			return nil, fmt.Errorf("%q is not an IP address or CIDR", e)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// policy decides which addresses may be contacted.
type policy struct{ allow []netip.Prefix }

func (p policy) allowed(ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	ip = ip.Unmap().WithZone("")
	for _, a := range p.allow {
		if a.Contains(ip) {
			return true
		}
	}
	if nat64.Contains(ip) {
		b := ip.As16()
		return p.allowed(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
	}
	for _, d := range denied {
		if d.Contains(ip) {
			return false
		}
	}
	return true
}

// checkDial judges the "host:port" the dialer is about to connect to.
func (p policy) checkDial(address string) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("outbound: %w: %v", ErrDenied, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !p.allowed(ip) {
		return fmt.Errorf("outbound: %w", ErrDenied)
	}
	return nil
}
