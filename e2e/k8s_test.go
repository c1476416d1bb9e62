//go:build e2e

package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"go.yaml.in/yaml/v3"
)

// manifest is one Kubernetes object from deploy/k8s, kept as a node so that
// each kind decodes into its own shape.
type manifest struct {
	file string
	kind string
	name string
	node *yaml.Node
}

type k8sDeployment struct {
	Spec struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec struct {
				Containers []k8sContainer `yaml:"containers"`
				Volumes    []k8sVolume    `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type k8sContainer struct {
	Name  string   `yaml:"name"`
	Args  []string `yaml:"args"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Env []struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	} `yaml:"env"`
	StartupProbe   *k8sProbe `yaml:"startupProbe"`
	ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
	LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
	VolumeMounts   []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

type k8sProbe struct {
	HTTPGet *struct {
		Path string    `yaml:"path"`
		Port intOrName `yaml:"port"`
	} `yaml:"httpGet"`
}

type k8sVolume struct {
	Name      string `yaml:"name"`
	ConfigMap *struct {
		Name string `yaml:"name"`
	} `yaml:"configMap"`
	Secret *struct {
		SecretName string `yaml:"secretName"`
	} `yaml:"secret"`
	EmptyDir *struct{} `yaml:"emptyDir"`
}

type k8sService struct {
	Spec struct {
		ClusterIP string            `yaml:"clusterIP"`
		Selector  map[string]string `yaml:"selector"`
		Ports     []struct {
			Name       string    `yaml:"name"`
			Port       int       `yaml:"port"`
			TargetPort intOrName `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type k8sConfigMap struct {
	Data map[string]string `yaml:"data"`
}

// intOrName is a Kubernetes IntOrString port: a number or a port name.
type intOrName string

func (p *intOrName) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.Value == "" {
		return fmt.Errorf("line %d: a port must be a number or a name", n.Line)
	}
	*p = intOrName(n.Value)
	return nil
}

// port resolves p against c's named ports; 0 when it names none.
func (c k8sContainer) port(p intOrName) int {
	if n, err := strconv.Atoi(string(p)); err == nil {
		return n
	}
	for _, cp := range c.Ports {
		if cp.Name == string(p) {
			return cp.ContainerPort
		}
	}
	return 0
}

func (c k8sContainer) hasPort(n int) bool {
	for _, cp := range c.Ports {
		if cp.ContainerPort == n {
			return true
		}
	}
	return false
}

func (c k8sContainer) env(name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// loadManifests parses every YAML document of every deploy/k8s/*.yaml.
func loadManifests(t *testing.T, dir string) []manifest {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no YAML in %s", dir)
	var out []manifest
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for i := 0; ; i++ {
			var doc yaml.Node
			err := dec.Decode(&doc)
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err, "%s: document %d does not parse", filepath.Base(f), i)
			var head struct {
				APIVersion string `yaml:"apiVersion"`
				Kind       string `yaml:"kind"`
				Metadata   struct {
					Name string `yaml:"name"`
				} `yaml:"metadata"`
			}
			require.NoError(t, doc.Decode(&head), "%s: document %d", filepath.Base(f), i)
			require.NotEmpty(t, head.APIVersion, "%s: document %d has no apiVersion", filepath.Base(f), i)
			require.NotEmpty(t, head.Kind, "%s: document %d has no kind", filepath.Base(f), i)
			if head.Kind != "Kustomization" {
				require.NotEmpty(t, head.Metadata.Name, "%s: document %d (%s) has no metadata.name", filepath.Base(f), i, head.Kind)
			}
			out = append(out, manifest{file: filepath.Base(f), kind: head.Kind, name: head.Metadata.Name, node: &doc})
		}
	}
	return out
}

// find decodes the one object of kind and name into v.
func find(t *testing.T, ms []manifest, kind, name string, v any) {
	t.Helper()
	var hits []manifest
	for _, m := range ms {
		if m.kind == kind && m.name == name {
			hits = append(hits, m)
		}
	}
	require.Len(t, hits, 1, "%s %s in deploy/k8s", kind, name)
	require.NoError(t, hits[0].node.Decode(v), "%s %s (%s)", kind, name, hits[0].file)
}

func addrPort(t *testing.T, addr string) (string, int) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	require.NoError(t, err, addr)
	n, err := strconv.Atoi(port)
	require.NoError(t, err, addr)
	return host, n
}

func container(t *testing.T, d k8sDeployment, name string) k8sContainer {
	t.Helper()
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %q", name)
	return k8sContainer{}
}

// TestK8sManifests_MatchConfig: without a cluster, every manifest parses,
// the ConfigMap's switchyard.yaml passes `switchyard validate`, and the
// manifests' ports and probes agree with that config.
func TestK8sManifests_MatchConfig(t *testing.T) {
	dir := filepath.Join(repoRoot, "deploy", "k8s")
	ms := loadManifests(t, dir)

	t.Run("kustomization lists every manifest", func(t *testing.T) {
		var k struct {
			Resources []string `yaml:"resources"`
		}
		find(t, ms, "Kustomization", "", &k)
		files := map[string]bool{}
		for _, m := range ms {
			if m.kind != "Kustomization" {
				files[m.file] = true
			}
		}
		for _, r := range k.Resources {
			assert.FileExists(t, filepath.Join(dir, r))
			delete(files, r)
		}
		assert.Empty(t, files, "manifests kustomization.yaml does not list")
	})

	var cm k8sConfigMap
	find(t, ms, "ConfigMap", "switchyard-config", &cm)
	const configKey = "switchyard.yaml"
	embedded, ok := cm.Data[configKey]
	require.True(t, ok, "ConfigMap switchyard-config has no data[%q]", configKey)
	cfgPath := filepath.Join(t.TempDir(), configKey)
	require.NoError(t, os.WriteFile(cfgPath, []byte(embedded), 0o644))
	out, err := exec.Command(switchyardBin, "validate", "--config", cfgPath).CombinedOutput()
	require.NoError(t, err, "switchyard validate on the ConfigMap's %s:\n%s", configKey, out)
	assert.Contains(t, string(out), ": ok")
	cfg, err := config.Parse([]byte(embedded))
	require.NoError(t, err)
	_, listenPort := addrPort(t, cfg.Listen)
	_, adminPort := addrPort(t, cfg.Admin.Listen)

	t.Run("switchyard deployment", func(t *testing.T) {
		var d k8sDeployment
		find(t, ms, "Deployment", "switchyard", &d)
		c := container(t, d, "switchyard")
		assert.True(t, c.hasPort(listenPort), "container ports %+v lack listen's %d", c.Ports, listenPort)
		assert.True(t, c.hasPort(adminPort), "container ports %+v lack admin.listen's %d", c.Ports, adminPort)
		testCases := []struct {
			desc  string
			probe *k8sProbe
			path  string
		}{
			{desc: "liveness", probe: c.LivenessProbe, path: "/healthz"},
			{desc: "readiness", probe: c.ReadinessProbe, path: "/readyz"},
		}
		for _, test := range testCases {
			if assert.NotNil(t, test.probe, test.desc) && assert.NotNil(t, test.probe.HTTPGet, test.desc) {
				assert.Equal(t, test.path, test.probe.HTTPGet.Path, test.desc)
				assert.Equal(t, adminPort, c.port(test.probe.HTTPGet.Port), "%s probe port %q", test.desc, test.probe.HTTPGet.Port)
			}
		}

		// The config file the container reads is the ConfigMap's key, in a
		// directory mount of it; the token and state paths are mounted too.
		mounts := map[string]k8sVolume{}
		for _, vm := range c.VolumeMounts {
			for _, v := range d.Spec.Template.Spec.Volumes {
				if v.Name == vm.Name {
					mounts[vm.MountPath] = v
				}
			}
		}
		argPath := ""
		for i, a := range c.Args {
			if a == "--config" && i+1 < len(c.Args) {
				argPath = c.Args[i+1]
			}
		}
		assert.Equal(t, "serve", firstOr(c.Args, ""), "args %q", c.Args)
		assert.Equal(t, configKey, path.Base(argPath), "args %q", c.Args)
		if v, ok := mounts[path.Dir(argPath)]; assert.True(t, ok, "--config %s is not in a mounted directory", argPath) {
			if assert.NotNil(t, v.ConfigMap, "volume mounted at %s", path.Dir(argPath)) {
				assert.Equal(t, "switchyard-config", v.ConfigMap.Name, "volume mounted at %s", path.Dir(argPath))
			}
		}
		if cfg.Admin.TokenFile != "" {
			v, ok := mounts[path.Dir(cfg.Admin.TokenFile)]
			assert.True(t, ok && v.Secret != nil, "admin.token_file %s is not in a mounted Secret", cfg.Admin.TokenFile)
		}
		if cfg.StateDir != "" {
			_, ok := mounts[cfg.StateDir]
			assert.True(t, ok, "state_dir %s is not a mounted volume", cfg.StateDir)
		}

		services := []struct {
			name string
			port int
		}{{"switchyard", listenPort}, {"switchyard-admin", adminPort}}
		for _, s := range services {
			var svc k8sService
			find(t, ms, "Service", s.name, &svc)
			assert.Subset(t, d.Spec.Template.Metadata.Labels, svc.Spec.Selector, "Service %s selects no switchyard pod", s.name)
			if assert.Len(t, svc.Spec.Ports, 1, "Service %s", s.name) {
				assert.Equal(t, s.port, c.port(svc.Spec.Ports[0].TargetPort), "Service %s targetPort %q", s.name, svc.Spec.Ports[0].TargetPort)
			}
		}
	})

	for _, color := range []config.Color{config.Blue, config.Green} {
		t.Run("model-service-"+string(color), func(t *testing.T) {
			pool := cfg.Pools.Get(color)
			require.Len(t, pool.Backends, 1, "pools.%s.backends", color)
			host, port := addrPort(t, pool.Backends[0])
			var d k8sDeployment
			find(t, ms, "Deployment", "model-service-"+string(color), &d)
			c := container(t, d, "model")
			assert.True(t, c.hasPort(port), "container ports %+v lack the backend port %d of %s", c.Ports, port, pool.Backends[0])
			assert.Equal(t, string(color), c.env("MODEL_COLOR"))
			assert.Equal(t, pool.Version, c.env("MODEL_VERSION"), "MODEL_VERSION against pools.%s.version", color)
			testCases := []struct {
				desc  string
				probe *k8sProbe
				path  string
			}{
				{desc: "startup", probe: c.StartupProbe, path: pool.Health.Path},
				{desc: "readiness", probe: c.ReadinessProbe, path: pool.Health.Path},
				{desc: "liveness", probe: c.LivenessProbe, path: "/v2/health/live"},
			}
			assert.Equal(t, "/health", pool.Health.Path)
			for _, test := range testCases {
				if assert.NotNil(t, test.probe, test.desc) && assert.NotNil(t, test.probe.HTTPGet, test.desc) {
					assert.Equal(t, test.path, test.probe.HTTPGet.Path, test.desc)
					assert.Equal(t, port, c.port(test.probe.HTTPGet.Port), "%s probe port %q", test.desc, test.probe.HTTPGet.Port)
				}
			}

			// The backend hostname is the color's headless Service in the
			// Deployment's namespace, on the backend port.
			svcName, ns, ok := strings.Cut(strings.TrimSuffix(host, ".svc.cluster.local"), ".")
			require.True(t, ok, "backend host %s is not <service>.<namespace>.svc.cluster.local", host)
			var svc k8sService
			find(t, ms, "Service", svcName, &svc)
			var meta struct {
				Metadata struct {
					Namespace string `yaml:"namespace"`
				} `yaml:"metadata"`
			}
			find(t, ms, "Service", svcName, &meta)
			assert.Equal(t, ns, meta.Metadata.Namespace, "Service %s namespace", svcName)
			assert.Equal(t, "None", svc.Spec.ClusterIP, "Service %s must be headless so that each pod is a backend", svcName)
			assert.Subset(t, d.Spec.Template.Metadata.Labels, svc.Spec.Selector, "Service %s selects no %s pod", svcName, color)
			found := false
			for _, p := range svc.Spec.Ports {
				if p.Port == port {
					found = true
					assert.Equal(t, port, c.port(p.TargetPort), "Service %s targetPort %q", svcName, p.TargetPort)
				}
			}
			assert.True(t, found, "Service %s has no port %d", svcName, port)
		})
	}
}

func firstOr(list []string, def string) string {
	if len(list) == 0 {
		return def
	}
	return list[0]
}
