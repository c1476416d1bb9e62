package proxy

import (
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestProxy_ForwardsToActiveColor(t *testing.T) {
	blue, green := colorServer(t, "blue"), colorServer(t, "green")
	gw := startGateway(t, testConfig(t, []string{hostPort(blue)}, []string{hostPort(green)}, ""))
	for range 3 {
		resp, err := http.Get(gw.URL + "/predict")
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, `{"backend":"blue"}`, string(body))
		assert.Equal(t, "blue", resp.Header.Get(HeaderColor))
		assert.Equal(t, "v1", resp.Header.Get(HeaderVersion))
	}
	res, err := gw.Router.Switch(SwitchRequest{To: "green", Trigger: TriggerAdmin})
	require.NoError(t, err)
	assert.Equal(t, "green", string(res.To))
	resp, err := http.Get(gw.URL + "/predict")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, `{"backend":"green"}`, string(body))
	assert.Equal(t, "green", resp.Header.Get(HeaderColor))
	t.Log(resp.Header)
}
