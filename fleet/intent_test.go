package fleet

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/proxy"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestIntent_RoundTripsThroughTheConfigMap(t *testing.T) {
	at := time.Date(2026, 12, 3, 17, 0, 0, 123456789, time.UTC)
	in := &Intent{Generation: 7, Active: config.Green, Canary: 2.5, StickyHeader: "X-User-ID",
		Mirror: &proxy.MirrorSetting{To: config.Blue, Percent: 1}, Trigger: proxy.TriggerAdmin, Forced: true, By: "gw-1", At: at,
		Reason: "switch asked on replica gw-1", Pending: &Pending{ID: "ab", To: config.Blue, By: "gw-2", At: at, Deadline: at.Add(time.Second)},
		History: []Record{{From: config.Blue, To: config.Green, Trigger: proxy.TriggerAdmin, By: "gw-1", At: at, Generation: 7}},
		File:    FileRecord{Routing: Routing{Active: config.Blue}, Seen: []string{"sum"}}}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "switchyard-fleet", ResourceVersion: "9", UID: "u"},
		Data: map[string]string{"note": "kept"}}

	out := encodeIntent(cm, in)
	got, err := decodeIntent(out)

	require.NoError(t, err)
	got.resourceVersion, got.uid, got.obj = "", "", nil
	assert.Equal(t, in, got)
	assert.Equal(t, "kept", out.Data["note"], "keys the gateway does not own are kept")
	assert.Equal(t, "green", out.Data["active"], "kubectl shows the color as is")
	assert.NotContains(t, cm.Data, "active", "the object read is never modified")
	assert.ElementsMatch(t, ownKeys(), keysOf(out.Data, "note"))
}

func TestIntent_EmptyConfigMapHoldsNoIntentYet(t *testing.T) {
	in, err := decodeIntent(&corev1.ConfigMap{})

	require.NoError(t, err)
	assert.Nil(t, in)
}

func TestIntent_HandEditsThatAreNoIntentAreRefusedWithTheKey(t *testing.T) {
	testCases := []struct {
		desc string
		data map[string]string
		want string
	}{
		{desc: "generation not a number", data: map[string]string{"generation": "seven", "active": "blue"}, want: "data.generation"},
		{desc: "no color", data: map[string]string{"generation": "3", "active": "purple"}, want: "data.active"},
		{desc: "canary above 100", data: map[string]string{"generation": "3", "active": "blue", "canary_percent": "120"}, want: "data.canary_percent"},
		{desc: "mirror to the active color", data: map[string]string{"generation": "3", "active": "blue", "mirror_to": "blue", "mirror_percent": "1"}, want: "data.mirror_to"},
		{desc: "history not JSON", data: map[string]string{"generation": "3", "active": "blue", "history": "["}, want: "data.history"},
		{desc: "sticky header with a space", data: map[string]string{"generation": "3", "active": "blue", "sticky_header": "X User"}, want: "data.sticky_header"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()

			_, err := decodeIntent(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ml", Name: "sf"}, Data: test.data})

			require.ErrorIs(t, err, ErrBadIntent)
			assert.Contains(t, err.Error(), "configmap ml/sf: "+test.want)
		})
	}
}

func TestFileRecord_RemembersTheLatestContents(t *testing.T) {
	var f FileRecord
	for i := range seenSize + 3 {
		f.remember(string(rune('a' + i)))
	}
	f.remember("d") // already there: not added twice

	assert.Len(t, f.Seen, seenSize)
	assert.False(t, f.seen("a"), "the oldest are forgotten")
	assert.True(t, f.seen(string(rune('a'+seenSize+2))))
}

func keysOf(m map[string]string, except string) []string {
	var out []string
	for k := range m {
		if k != except {
			out = append(out, k)
		}
	}
	return out
}
