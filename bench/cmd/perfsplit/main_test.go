package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSplit_CountsEachSampleInTheFirstMatchingStep(t *testing.T) {
	script := strings.Join([]string{
		"switchyard 1 [000] 1.0: cpu-clock:",
		"\tffff tcp_sendmsg ([kernel.kallsyms])",
		"\t4a syscall.write (/bin/switchyard)",
		"\t4b github.com/switchyard/switchyard/proxy.(*exchange).send (/bin/switchyard)",
		"",
		"switchyard 1 [000] 1.1: cpu-clock:",
		"\t4a syscall.write (/bin/switchyard)",
		"\t4c github.com/valyala/fasthttp.writeResponse (/bin/switchyard)",
		"",
		"switchyard 1 [000] 1.2: cpu-clock:",
		"\t4d github.com/switchyard/switchyard/proxy.prepareRequest (/bin/switchyard)",
		"\t4e github.com/switchyard/switchyard/proxy.(*Handler).ServeHTTP (/bin/switchyard)",
		"",
		"switchyard 1 [000] 1.3: cpu-clock:",
		"\t4f main.somethingElse (/bin/switchyard)",
		"",
	}, "\n")
	counts, total, err := split(strings.NewReader(script))
	require.NoError(t, err)
	assert.Equal(t, 4, total)
	assert.Equal(t, map[string]int{
		"write: request to the backend (syscall, TCP, wake-up)":          1,
		"write: answer to the client (syscall, TCP, wake-up)":            1,
		"gateway header rewriting (forwarded, request id, hops, colors)": 1,
		"other": 1,
	}, counts)
}
