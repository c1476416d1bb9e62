//go:build k8s

package k8s

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// start starts a cluster for t; without the binaries it fails in CI
// (CI=true) and skips elsewhere.
func start(t *testing.T, users ...User) *Cluster {
	t.Helper()
	c, err := Start(users...)
	if errors.Is(err, ErrNoBinaries) && os.Getenv("CI") != "true" {
		t.Skip(err)
	}
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

func TestCluster_ServesTheAPIWithRBACAndSurvivesARestart(t *testing.T) {
	sa := ServiceAccount("default", "nobody")
	c := start(t, sa)
	admin, err := c.Client()
	require.NoError(t, err)
	ctx := context.Background()

	_, err = admin.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"},
		Data: map[string]string{"k": "v"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	nobody, err := kubernetes.NewForConfig(c.RESTConfig(sa))
	require.NoError(t, err)
	_, err = nobody.CoreV1().ConfigMaps("default").Get(ctx, "x", metav1.GetOptions{})
	assert.True(t, apierrors.IsForbidden(err), "RBAC is on: an unbound service account may read nothing: %v", err)

	c.StopAPIServer()
	_, err = admin.CoreV1().ConfigMaps("default").Get(ctx, "x", metav1.GetOptions{})
	require.Error(t, err, "the API server is down")
	require.NoError(t, c.StartAPIServer())
	cm, err := admin.CoreV1().ConfigMaps("default").Get(ctx, "x", metav1.GetOptions{})
	require.NoError(t, err, "etcd kept the data across the restart")
	assert.Equal(t, "v", cm.Data["k"])
}
