package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// grpcPools is a config's pools section with extra inside each pool.
func grpcPools(blue, green string) string {
	return "pools:\n  blue: {version: v1, backends: [\"127.0.0.1:5001\"]" + blue + "}\n  green: {version: v2, backends: [\"127.0.0.1:5002\"]" + green + "}\n"
}

func TestParse_ProtocolTLSAndGRPCSettingsAreChecked(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("hello"), 0o600))
	testCases := []struct {
		desc    string
		yaml    string
		wantErr string
	}{
		{desc: "grpc pools", yaml: grpcPools(", protocol: grpc", ", protocol: grpc")},
		{desc: "an unknown protocol", yaml: grpcPools(", protocol: grpc", ", protocol: h3"),
			wantErr: `pools.green.protocol: "h3" is not http1, h2c or grpc`},
		{desc: "colors speaking different protocols", yaml: grpcPools("", ", protocol: grpc"),
			wantErr: `pools.green.protocol: "grpc" differs from pools.blue.protocol "http1"`},
		{desc: "TLS to http1 backends", yaml: grpcPools(", tls: {enabled: true}", ""),
			wantErr: "pools.blue.tls.enabled: TLS to backends needs protocol h2c or grpc"},
		{desc: "TLS fields without enabled", yaml: grpcPools(", protocol: grpc, tls: {server_name: x}", ", protocol: grpc"),
			wantErr: "pools.blue.tls.enabled: is false but other tls fields are set"},
		{desc: "a CA file that is not PEM", yaml: grpcPools(", protocol: grpc, tls: {enabled: true, ca_file: "+notPEM+"}", ", protocol: grpc"),
			wantErr: "pools.blue.tls.ca_file: " + `"` + notPEM + `" holds no PEM certificate`},
		{desc: "a client certificate without its key", yaml: grpcPools(", protocol: grpc, tls: {enabled: true, cert_file: "+notPEM+"}", ", protocol: grpc"),
			wantErr: "pools.blue.tls.key_file: missing; cert_file is set"},
		{desc: "a listener certificate that does not load", yaml: "tls: {cert_file: " + notPEM + ", key_file: " + notPEM + "}\n" + grpcPools("", ""),
			wantErr: "tls.cert_file: the listener's certificate does not load"},
		{desc: "TLS 1.1", yaml: "tls: {min_version: \"1.1\"}\n" + grpcPools("", ""),
			wantErr: `tls.min_version: "1.1" is not a TLS version this gateway accepts`},
		{desc: "a grpc probe needs no path", yaml: "health: {kind: grpc, service: inference.GRPCInferenceService}\n" + grpcPools(", protocol: grpc", ", protocol: grpc")},
		{desc: "a kserve-grpc warmup", yaml: "warmup: {kind: kserve-grpc, model: mlp, body: '{\"inputs\": []}'}\n" + grpcPools("", "")},
		{desc: "a kserve-grpc warmup without a body", yaml: "warmup: {kind: kserve-grpc, model: mlp}\n" + grpcPools("", ""),
			wantErr: "warmup.body: kserve-grpc warmup needs the inference request as KServe v2 JSON"},
		{desc: "an unknown warmup kind", yaml: "warmup: {kind: smtp}\n" + grpcPools("", ""),
			wantErr: `warmup.kind: "smtp" is not a warmup kind (want http or kserve-grpc)`},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			cfg, err := Parse([]byte(test.yaml))
			if test.wantErr == "" {
				require.NoError(t, err)
				require.NotNil(t, cfg)
				return
			}
			require.ErrorIs(t, err, ErrInvalid)
			assert.True(t, strings.Contains(err.Error(), test.wantErr), "%q does not say %q", err.Error(), test.wantErr)
		})
	}
}

func TestParse_GRPCDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := Parse([]byte(grpcPools("", "")))
	require.NoError(t, err)
	assert.Equal(t, ProtocolHTTP1, cfg.Pools.Blue.Protocol)
	assert.False(t, cfg.TLS.On())
	assert.Equal(t, TLS12, cfg.TLS.MinVersion)
	assert.Equal(t, WarmupHTTP, cfg.Warmup.Kind)
	assert.False(t, cfg.Pools.Blue.Warmup.On(), "no path, no warmup")
}
