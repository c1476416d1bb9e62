//go:build k8s

package fleete2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/test/k8s"
	"go.yaml.in/yaml/v3"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"
	"k8s.io/utils/ptr"
)

// applyManifests applies every resource kustomization.yaml lists, as
// `kubectl apply --server-side --validate=strict` would: the API server
// validates each object and refuses any unknown field. With dryRun
// nothing is stored.
func applyManifests(ctx context.Context, dryRun bool) error {
	dir := filepath.Join(repoRoot, "deploy", "k8s")
	kdata, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return err
	}
	var k struct {
		Namespace string   `yaml:"namespace"`
		Resources []string `yaml:"resources"`
	}
	if err := yaml.Unmarshal(kdata, &k); err != nil {
		return fmt.Errorf("kustomization.yaml: %w", err)
	}
	rc := cluster.RESTConfig(k8s.Admin)
	dc, err := discovery.NewDiscoveryClientForConfig(rc)
	if err != nil {
		return err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return err
	}
	for _, file := range k.Resources {
		data, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			return err
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for i := 0; ; i++ {
			var doc map[string]any
			if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return fmt.Errorf("%s document %d: %w", file, i, err)
			}
			obj := &unstructured.Unstructured{Object: doc}
			if obj.GetNamespace() == "" && obj.GetKind() != "Namespace" {
				obj.SetNamespace(k.Namespace)
			}
			gvk := obj.GroupVersionKind()
			m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if err != nil {
				return fmt.Errorf("%s document %d: %s: %w", file, i, gvk, err)
			}
			body, err := obj.MarshalJSON()
			if err != nil {
				return err
			}
			opts := metav1.PatchOptions{FieldManager: "switchyard-tests", Force: ptr.To(true), FieldValidation: "Strict"}
			if dryRun {
				opts.DryRun = []string{metav1.DryRunAll}
			}
			var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
			if m.Scope.Name() == "namespace" {
				ri = dyn.Resource(m.Resource).Namespace(obj.GetNamespace())
			}
			if _, err := ri.Patch(ctx, obj.GetName(), types.ApplyPatchType, body, opts); err != nil {
				return fmt.Errorf("applying %s %s/%s from %s: %w", gvk.Kind, obj.GetNamespace(), obj.GetName(), file, err)
			}
		}
	}
	return nil
}

func TestManifests_AreAcceptedByTheAPIServerAndGrantTheLeastTheFleetNeeds(t *testing.T) {
	ctx := context.Background()
	require.NoError(t, applyManifests(ctx, true), "server-side validation of deploy/k8s, strict")
	d, err := adminCS.AppsV1().Deployments(namespace).Get(ctx, "switchyard", metav1.GetOptions{})
	require.NoError(t, err)
	assert.EqualValues(t, 3, *d.Spec.Replicas)
	assert.Equal(t, "switchyard", d.Spec.Template.Spec.ServiceAccountName)

	sa, err := kubernetes.NewForConfig(cluster.RESTConfig(gwUser))
	require.NoError(t, err)
	cms, leases := sa.CoreV1().ConfigMaps(namespace), sa.CoordinationV1().Leases(namespace)
	testCases := []struct {
		desc    string
		call    func() error
		allowed bool
	}{
		{desc: "get the intent", allowed: true, call: func() error {
			_, err := cms.Get(ctx, intentName, metav1.GetOptions{})
			return err
		}},
		{desc: "list and watch the intent by name", allowed: true, call: func() error {
			_, err := cms.List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + intentName})
			if err == nil {
				var w interface{ Stop() }
				w, err = cms.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + intentName})
				if err == nil {
					w.Stop()
				}
			}
			return err
		}},
		{desc: "update the intent", allowed: true, call: func() error {
			cm, err := cms.Get(ctx, intentName, metav1.GetOptions{})
			if err == nil {
				_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
			}
			return err
		}},
		{desc: "read the config ConfigMap", call: func() error {
			_, err := cms.Get(ctx, "switchyard-config", metav1.GetOptions{})
			return err
		}},
		{desc: "list every ConfigMap", call: func() error {
			_, err := cms.List(ctx, metav1.ListOptions{})
			return err
		}},
		{desc: "create a ConfigMap", call: func() error {
			_, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "other"}}, metav1.CreateOptions{})
			return err
		}},
		{desc: "delete the intent", call: func() error {
			return cms.Delete(ctx, intentName, metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
		}},
		{desc: "read the admin token Secret", call: func() error {
			_, err := sa.CoreV1().Secrets(namespace).Get(ctx, "switchyard-admin-token", metav1.GetOptions{})
			return err
		}},
		{desc: "keep a Lease", allowed: true, call: func() error {
			l, err := leases.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "rbac-probe"}}, metav1.CreateOptions{})
			if err == nil {
				_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
			}
			if err == nil {
				err = leases.Delete(ctx, l.Name, metav1.DeleteOptions{})
			}
			return err
		}},
		{desc: "a Lease in another namespace", call: func() error {
			_, err := sa.CoordinationV1().Leases("default").List(ctx, metav1.ListOptions{})
			return err
		}},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			err := test.call()

			if test.allowed {
				assert.NoError(t, err)
				return
			}
			assert.True(t, apierrors.IsForbidden(err), "want 403 Forbidden, got %v", err)
		})
	}
}
