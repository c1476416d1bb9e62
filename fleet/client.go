package fleet

import (
	"fmt"
	"os"
	"strings"

	"github.com/switchyard/switchyard/config"
	"go.uber.org/zap"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// serviceAccountNamespace is where a pod finds its own namespace.
const serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// Connect builds the API client for k: from the kubeconfig file when set,
// else from the pod's service account. It also resolves the namespace:
// k.Namespace, else $POD_NAMESPACE, else the service account's, else the
// kubeconfig context's.
func Connect(k config.FleetKubernetes) (kubernetes.Interface, string, error) {
	var rc *rest.Config
	ns := k.Namespace
	var err error
	if k.Kubeconfig != "" {
		loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
			&clientcmd.ClientConfigLoadingRules{ExplicitPath: k.Kubeconfig}, &clientcmd.ConfigOverrides{})
		if rc, err = loader.ClientConfig(); err != nil {
			return nil, "", fmt.Errorf("fleet: fleet.kubernetes.kubeconfig %s: %w", k.Kubeconfig, err)
		}
		if ns == "" {
			if n, _, err := loader.Namespace(); err == nil && os.Getenv("POD_NAMESPACE") == "" {
				ns = n
			}
		}
	} else if rc, err = rest.InClusterConfig(); err != nil {
		return nil, "", fmt.Errorf("fleet: no in-cluster credentials (%w); outside a pod set fleet.kubernetes.kubeconfig", err)
	}
	if ns == "" {
		ns = os.Getenv("POD_NAMESPACE")
	}
	if ns == "" {
		if b, err := os.ReadFile(serviceAccountNamespace); err == nil {
			ns = strings.TrimSpace(string(b))
		}
	}
	if ns == "" {
		return nil, "", fmt.Errorf("fleet: no namespace: set fleet.kubernetes.namespace or $POD_NAMESPACE")
	}
	// A switch is a handful of calls; the default 5 per second would
	// queue a burst of them behind the heartbeats.
	rc.QPS, rc.Burst = 100, 200
	rc.UserAgent = "switchyard"
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, "", fmt.Errorf("fleet: building the Kubernetes client: %w", err)
	}
	return cs, ns, nil
}

// ReplicaName is this replica's name: name when set, else $POD_NAME, else
// the host name, lower-cased.
func ReplicaName(name string) (string, error) {
	if name != "" {
		return name, nil
	}
	if n := os.Getenv("POD_NAME"); n != "" {
		return n, nil
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "", fmt.Errorf("fleet: no replica name: set fleet.replica or $POD_NAME (host name: %w)", err)
	}
	h = strings.ToLower(h)
	if !config.ValidObjectName(h) || len(h) > 63 {
		return "", fmt.Errorf("fleet: the host name %q cannot name a replica; set fleet.replica or $POD_NAME", h)
	}
	return h, nil
}

// Join connects to the API server as cfg says and returns this replica's
// membership over router, not started yet: Start joins the fleet.
func Join(cfg config.Fleet, router Target, log *zap.Logger) (*Fleet, error) {
	cs, ns, err := Connect(cfg.Kubernetes)
	if err != nil {
		return nil, err
	}
	replica, err := ReplicaName(cfg.Replica)
	if err != nil {
		return nil, err
	}
	return New(cfg, Options{Client: cs, Namespace: ns, Replica: replica, Router: router, Log: log}), nil
}
