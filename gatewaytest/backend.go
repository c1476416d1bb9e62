package gatewaytest

import (
	"net"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/modelsim"
)

// StartModel runs a simulated model server on a loopback port until the
// test ends. Its Addr is what a config lists as a backend.
func StartModel(t testing.TB, opts modelsim.Options) *modelsim.Server {
	t.Helper()
	s, err := modelsim.Start("127.0.0.1:0", opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// UnusedAddr returns a loopback host:port nothing listens on right now: it
// was listened on, then closed. A dial to it is refused, and a server may
// bind it.
func UnusedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}
