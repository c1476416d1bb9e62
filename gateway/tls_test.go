package gateway_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/gatewaytest"
	"github.com/switchyard/switchyard/internal/certtest"
	"github.com/switchyard/switchyard/proto/inference/inferencetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// Regression test for the gap left by issue 16: both pools serve gRPC
// over mutual TLS. Their backends become ready through kserve-grpc
// probes and ModelInfer warmup dialed with each pool's tls, so the switch
// to green goes through instead of being refused forever.
func TestSwitch_ToATLSGRPCPoolGoesThroughOnceItsBackendsAreWarm(t *testing.T) {
	ca := certtest.NewCA(t)
	serve := grpc.Creds(credentials.NewTLS(ca.ServerConfig(t, "backend", true)))
	blue := inferencetest.Start(t, "mlp", "v1", serve)
	green := inferencetest.Start(t, "mlp", "v2", serve)
	caFile, certFile, keyFile := ca.Files(t, "switchyard")
	poolTLS := fmt.Sprintf("{enabled: true, ca_file: %s, server_name: %s, cert_file: %s, key_file: %s}",
		caFile, certtest.BackendName, certFile, keyFile)
	cfg := fmt.Sprintf(`listen: 127.0.0.1:18080
admin: {listen: 127.0.0.1:19901}
active: blue
health: {kind: kserve-grpc, model: mlp, interval: 500ms, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 3}
warmup:
  kind: kserve-grpc
  model: mlp
  body: '{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}'
  requests: 2
pools:
  blue: {version: v1, protocol: grpc, backends: [%s], tls: %s}
  green: {version: v2, protocol: grpc, backends: [%s], tls: %s}
`, blue.Addr, poolTLS, green.Addr, poolTLS)
	g := startGateway(t, gatewaytest.NewConfigFile(t, cfg))

	g.WaitReady(t, config.Blue, config.Green)
	g.Switch(t, config.Green)

	assert.Equal(t, config.Green, g.Status(t).Active)
	assert.Equal(t, int64(2), green.Infers.Load(), "green warmed by two ModelInfer calls over mutual TLS")
}
