package config

import (
	"net"
	"strconv"
	"strings"
)

// reachesListener reports whether a backend at addr would be the gateway's
// own listener at listen, so that proxying to it loops back into the
// gateway. Both are host:port. They match when the ports are equal and:
//
//   - the hosts are equal (names case-insensitively, IPs as addresses), or
//     one is "localhost" and the other a loopback IP;
//   - listen's host is a wildcard (empty, 0.0.0.0 or ::) and addr's host
//     is this machine: localhost, a loopback IP, a wildcard IP or an
//     address of one of its network interfaces (from local);
//   - addr's host is a wildcard IP, which dials this machine's loopback,
//     and listen's host is loopback.
//
// Other host names are not resolved: the gateway's runtime loop check
// catches what this misses.
func reachesListener(addr, listen string, local func() []net.IP) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	lhost, lport, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	p, err := strconv.Atoi(port)
	if lp, lerr := strconv.Atoi(lport); err != nil || lerr != nil || p != lp {
		return false
	}
	ip, lip := net.ParseIP(host), net.ParseIP(lhost)
	switch {
	case strings.EqualFold(host, lhost), ip != nil && ip.Equal(lip):
		return true
	case lhost == "" || lip != nil && lip.IsUnspecified():
		return isThisMachine(host, ip, local)
	case ip != nil && ip.IsUnspecified():
		return isLoopback(lhost, lip)
	default:
		return strings.EqualFold(host, "localhost") && lip != nil && lip.IsLoopback() ||
			strings.EqualFold(lhost, "localhost") && ip != nil && ip.IsLoopback()
	}
}

func isLoopback(host string, ip net.IP) bool {
	return strings.EqualFold(host, "localhost") || ip != nil && ip.IsLoopback()
}

func isThisMachine(host string, ip net.IP, local func() []net.IP) bool {
	if isLoopback(host, ip) || ip != nil && ip.IsUnspecified() {
		return true
	}
	if ip == nil {
		return false
	}
	for _, l := range local() {
		if l.Equal(ip) {
			return true
		}
	}
	return false
}

// localIPs returns the addresses of this machine's network interfaces,
// none when they cannot be listed.
func localIPs() []net.IP {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	ips := make([]net.IP, 0, len(addrs))
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			ips = append(ips, n.IP)
		}
	}
	return ips
}
