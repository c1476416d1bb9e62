package config

import (
	"errors"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReachesListener(t *testing.T) {
	local := func() []net.IP { return []net.IP{net.ParseIP("10.1.2.3"), net.ParseIP("fd00::7")} }
	testCases := []struct {
		desc            string
		backend, listen string
		want            bool
	}{
		{desc: "same address", backend: "127.0.0.1:8080", listen: "127.0.0.1:8080", want: true},
		{desc: "other port", backend: "127.0.0.1:8081", listen: "127.0.0.1:8080"},
		{desc: "other loopback address", backend: "127.0.0.2:8080", listen: "127.0.0.1:8080"},
		{desc: "localhost for loopback listen", backend: "localhost:8080", listen: "127.0.0.1:8080", want: true},
		{desc: "loopback for localhost listen", backend: "[::1]:8080", listen: "LocalHost:8080", want: true},
		{desc: "same hostname", backend: "gw.internal:8080", listen: "GW.internal:8080", want: true},
		{desc: "other hostname is not resolved", backend: "gw.internal:8080", listen: "10.1.2.3:8080"},
		{desc: "IPv4-mapped IPv6 is the same address", backend: "[::ffff:10.0.0.9]:8080", listen: "10.0.0.9:8080", want: true},
		{desc: "wildcard listen and loopback", backend: "127.0.0.1:8080", listen: "0.0.0.0:8080", want: true},
		{desc: "empty-host listen and localhost", backend: "localhost:8080", listen: ":8080", want: true},
		{desc: "IPv6 wildcard listen and IPv4 loopback", backend: "127.0.0.1:8080", listen: "[::]:8080", want: true},
		{desc: "wildcard listen and an interface address", backend: "10.1.2.3:8080", listen: "0.0.0.0:8080", want: true},
		{desc: "wildcard listen and an IPv6 interface address", backend: "[fd00::7]:8080", listen: "[::]:8080", want: true},
		{desc: "wildcard listen and another machine", backend: "10.9.9.9:8080", listen: "0.0.0.0:8080"},
		{desc: "wildcard listen and a hostname", backend: "model:8080", listen: "0.0.0.0:8080"},
		{desc: "wildcard listen, other port", backend: "127.0.0.1:5000", listen: "0.0.0.0:8080"},
		{desc: "wildcard backend dials loopback", backend: "0.0.0.0:8080", listen: "127.0.0.1:8080", want: true},
		{desc: "wildcard backend and a non-loopback listen", backend: "0.0.0.0:8080", listen: "10.1.2.3:8080"},
		{desc: "leading-zero port is the same port", backend: "127.0.0.1:08080", listen: "127.0.0.1:8080", want: true},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, test.want, reachesListener(test.backend, test.listen, local))
		})
	}
}

// Regression test for issue 12 item 5: a backend that is the gateway's own
// listener was accepted, and every request to it looped back into the
// gateway.
func TestParse_BackendThatIsTheGatewayItselfIsRefused(t *testing.T) {
	testCases := []struct {
		desc string
		yaml string
		want string
	}{
		{
			desc: "the traffic listener",
			yaml: `listen: 127.0.0.1:8080
pools:
  blue: {version: v1, backends: [10.0.0.1:5000]}
  green:
    version: v2
    backends: [10.0.0.2:5000, "localhost:8080"]
`,
			want: `config: line 6: pools.green.backends[1]: "localhost:8080" is the gateway's own listen address (listen: "127.0.0.1:8080"); a backend must be a model server, or every request would loop back into the gateway`,
		},
		{
			desc: "the traffic listener on every address",
			yaml: `listen: 0.0.0.0:8080
pools:
  blue: {version: v1, backends: [127.0.0.1:8080]}
  green: {version: v2}
`,
			want: `config: line 3: pools.blue.backends[0]: "127.0.0.1:8080" is the gateway's own listen address (listen: "0.0.0.0:8080"); a backend must be a model server, or every request would loop back into the gateway`,
		},
		{
			desc: "the default admin listener",
			yaml: `pools:
  blue: {version: v1, backends: [10.0.0.1:5000]}
  green: {version: v2, backends: [127.0.0.1:9901]}
`,
			want: `config: line 3: pools.green.backends[0]: "127.0.0.1:9901" is the gateway's own admin address (admin.listen: "127.0.0.1:9901"); a backend must be a model server, not the gateway's admin API`,
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()

			cfg, err := Parse([]byte(test.yaml))

			require.Error(t, err)
			assert.Nil(t, cfg)
			assert.Equal(t, test.want, err.Error())
		})
	}
}

func TestParse_BackendOnThisMachineAtAnotherPortIsAccepted(t *testing.T) {
	const y = `listen: 0.0.0.0:8080
pools:
  blue: {version: v1, backends: [127.0.0.1:5001, "localhost:5002"]}
  green: {version: v2, backends: ["[::1]:5003"]}
`
	_, err := Parse([]byte(y))

	require.NoError(t, err)
}

// Regression test for issue 12 (sticky_header): only space, colon, CR and
// LF were refused, so a name with a tab, a NUL or a comma was accepted and
// could never match a request header.
func TestParse_StickyHeaderMustBeAHeaderName(t *testing.T) {
	testCases := []struct {
		desc   string
		header string
		ok     bool
	}{
		{desc: "plain name", header: "X-User-ID", ok: true},
		{desc: "every tchar", header: "a0!#$%&'*+-.^_`|~Z", ok: true},
		{desc: "empty is off", header: "", ok: true},
		{desc: "space", header: "X User"},
		{desc: "colon", header: "X-User:"},
		{desc: "tab", header: "X-User\t"},
		{desc: "NUL", header: "X-User\x00"},
		{desc: "DEL", header: "X-User\x7f"},
		{desc: "newline", header: "X-User\nX-Admin"},
		{desc: "comma", header: "X-A,X-B"},
		{desc: "quote", header: `X-"User"`},
		{desc: "slash", header: "X/User"},
		{desc: "non-ASCII", header: "X-Üser"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			y := "traffic:\n  sticky_header: " + quoteYAML(test.header) + "\n" + minimal

			cfg, err := Parse([]byte(y))

			if test.ok {
				require.NoError(t, err)
				assert.Equal(t, test.header, cfg.Traffic.StickyHeader)
				return
			}
			var es Errors
			require.True(t, errors.As(err, &es), "%v", err)
			require.Len(t, es, 1, "%v", err)
			assert.Equal(t, "traffic.sticky_header", es[0].Path)
			assert.Equal(t, 2, es[0].Line)
			assert.Contains(t, es[0].Msg, "is not a header name (want letters, digits and !#$%&'*+-.^_`|~ only, e.g. X-User-ID)")
		})
	}
}

func TestParse_WarmupHeaderNamesMustBeHeaderNames(t *testing.T) {
	const y = "warmup:\n  path: /predict\n  headers: {\"X-Api-Key\": k, \"Bad\\tName\": v, \"Content-Type:\": x}\n" + minimal

	_, err := Parse([]byte(y))

	var es Errors
	require.True(t, errors.As(err, &es), "%v", err)
	require.Len(t, es, 2, "%v", err)
	assert.Equal(t, `"Bad\tName" is not a header name (want letters, digits and !#$%&'*+-.^_`+"`"+`|~ only, e.g. X-Api-Key)`, es[0].Msg)
	assert.Contains(t, es[1].Msg, `"Content-Type:" is not a header name`)
	assert.Equal(t, "warmup.headers", es[1].Path)
}

// quoteYAML writes s as a double-quoted YAML scalar.
func quoteYAML(s string) string {
	var b []byte
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r < 0x20 || r == 0x7f:
			b = append(b, []byte(`\x`)...)
			b = append(b, "0123456789abcdef"[r>>4], "0123456789abcdef"[r&15])
		default:
			b = append(b, string(r)...)
		}
	}
	return string(append(b, '"'))
}
