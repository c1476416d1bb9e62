package health

import (
	"context"

	"github.com/switchyard/switchyard/config"
)

// kind is one probe protocol, named by config's health.kind: how to ask a
// model server whether it can serve, and what its answer means. Each kind
// has its own file (kind_json.go, kind_triton.go, ...) and test; adding
// one is that file, its test, and its line in builtinKinds.
type kind interface {
	// defaultPath is the path probed when config sets none. config fills
	// it in (config.DefaultProbePath) because config cannot import
	// health; TestKinds_DefaultPathsAreConfigs keeps the two equal.
	defaultPath() string
	// probe asks the backend at ep once, within ctx. A nil error means
	// healthy. The Report holds what the server said about itself even
	// when it is not healthy: a json body saying "loading" still carries
	// the boot_id that tells a restart.
	probe(ctx context.Context, ep endpoint, h *config.Health) (Report, error)
}

// builtinKinds returns every probe kind by the name config knows it by,
// each sending its HTTP requests through get and its gRPC calls through
// conns. It builds a new map on each call, so no registry is shared
// between Checkers or left to mutate.
func builtinKinds(get *httpGetter, conns *grpcConns) map[string]kind {
	return map[string]kind{
		config.ProbeHTTP:       httpKind{get},
		config.ProbeJSON:       jsonKind{get},
		config.ProbeKServe:     kserveKind{get},
		config.ProbeTriton:     tritonKind{kserveKind{get}},
		config.ProbeTorchServe: torchServeKind{get},
		config.ProbeVLLM:       vllmKind{get},
		config.ProbeGRPC:       grpcKind{conns},
		config.ProbeKServeGRPC: kserveGRPCKind{conns},
	}
}
