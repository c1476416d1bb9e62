package gateway

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/internal/certtest"
)

// The traffic listener's kind (TLS or cleartext), the files its
// certificate is re-read from and its lowest TLS version are fixed when it
// starts: a reload that changes them is reported in config.restart_needed
// and the listener's settings stay; the rest of the edit applies.
func TestReload_ListenerTLSChangeNeedsARestartAndTheRestApplies(t *testing.T) {
	t.Parallel()
	ca := certtest.NewCA(t)
	_, cert1, key1 := ca.Files(t, "gateway-1")
	_, cert2, key2 := ca.Files(t, "gateway-2")
	listener := func(cert, key, minVersion string) string {
		if cert == "" {
			return ""
		}
		return fmt.Sprintf("tls: {cert_file: %s, key_file: %s, min_version: %q}\n", cert, key, minVersion)
	}
	testCases := []struct {
		desc        string
		before, now string
		// want are the fields restart_needed names, in order.
		want []string
	}{
		{desc: "turning TLS on", before: listener("", "", ""), now: listener(cert1, key1, "1.2"),
			want: []string{"tls.cert_file", "tls.key_file"}},
		{desc: "turning TLS off", before: listener(cert1, key1, "1.2"), now: listener("", "", ""),
			want: []string{"tls.cert_file", "tls.key_file"}},
		{desc: "other certificate files", before: listener(cert1, key1, "1.2"), now: listener(cert2, key2, "1.2"),
			want: []string{"tls.cert_file", "tls.key_file"}},
		{desc: "another min_version", before: listener(cert1, key1, "1.2"), now: listener(cert1, key1, "1.3"),
			want: []string{"tls.min_version"}},
		{desc: "the same files", before: listener(cert1, key1, "1.2"), now: listener(cert1, key1, "1.2")},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			r, path := newBareReloaderOf(t, test.before+unreadableConfig)
			started := r.started.TLS
			edited := test.now + strings.Replace(unreadableConfig, "version: v2", "version: v2-rc2", 1)
			require.NoError(t, os.WriteFile(path, []byte(edited), 0o644))

			require.NoError(t, r.Reload("test"))

			st := r.ConfigStatus()
			assert.Empty(t, st.LastError)
			assert.Equal(t, 2, st.Generation)
			var named []string
			for _, m := range st.RestartNeeded {
				named = append(named, strings.SplitN(m, ":", 2)[0])
				assert.Contains(t, m, "needs a restart", "restart_needed: %q", st.RestartNeeded)
			}
			assert.Equal(t, test.want, named, "restart_needed: %q", st.RestartNeeded)
			inForce := r.router.Config()
			assert.Equal(t, started, inForce.TLS, "the listener's settings changed without a restart")
			assert.Equal(t, "v2-rc2", inForce.Pools.Get(config.Green).Version, "the rest of the edit was not applied")
		})
	}
}
