package deploy_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// wantIngress is who may connect to each workload, on which container port, as
// "source:port" ("*" is any client, in the cluster or outside). Default deny covers
// everything else.
func wantIngress() map[string][]string {
	return map[string][]string{
		"Deployment/router":          {"*:3500", "*:50001"},
		"Deployment/pii-scrubber":    {"audit:3510", "router:3510"},
		"Deployment/cache":           {"router:3520"},
		"Deployment/audit":           {"router:3540"},
		"Deployment/provider-worker": nil,
		// Worker pools (deploy/pools): workers like the shared one.
		"Deployment/provider-worker-echo": nil,
		"Deployment/nats":                 {"audit:4222", "cache:4222", "provider-worker:4222", "router:4222"},
		// The NATS cluster of nats-cluster/: clients, and routes between its servers.
		"StatefulSet/nats":     {"audit:4222", "cache:4222", "nats:6222", "provider-worker:4222", "router:4222"},
		"StatefulSet/postgres": {"audit:5432"},
	}
}

// TestNetworkPolicies evaluates each overlay's NetworkPolicies as a cluster would for
// pods of the same namespace: every workload is isolated, and the pods that may reach
// it, and on which ports, are exactly wantIngress.
func TestNetworkPolicies(t *testing.T) {
	t.Parallel()
	for _, tc := range overlayCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := render(t, tc.dir)
			workloads := r.workloads()
			require.NotEmpty(t, r.policies)

			selected := func(sel metav1.LabelSelector) []string {
				s, err := metav1.LabelSelectorAsSelector(&sel)
				require.NoError(t, err)
				var out []string
				for id, tmpl := range workloads {
					if s.Matches(labels.Set(tmpl.Labels)) {
						out = append(out, id)
					}
				}
				slices.Sort(out)
				return out
			}
			appName := func(id string) string { return workloads[id].Labels["app.kubernetes.io/name"] }

			isolated := map[string]bool{}
			got := map[string][]string{}
			for name, p := range r.policies {
				targets := selected(p.Spec.PodSelector)
				require.NotEmpty(t, targets, "NetworkPolicy %s selects no workload", name)
				require.Equal(t, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}, p.Spec.PolicyTypes, "NetworkPolicy %s: policyTypes", name)
				for _, target := range targets {
					isolated[target] = true
					containers := workloads[target].Spec.Containers
					for i, rule := range p.Spec.Ingress {
						var sources []string
						if len(rule.From) == 0 {
							sources = []string{"*"}
						}
						for _, peer := range rule.From {
							require.Nil(t, peer.NamespaceSelector, "NetworkPolicy %s rule %d: only pods of the namespace", name, i)
							require.Nil(t, peer.IPBlock, "NetworkPolicy %s rule %d: no address blocks", name, i)
							require.NotNil(t, peer.PodSelector, "NetworkPolicy %s rule %d", name, i)
							peers := selected(*peer.PodSelector)
							require.NotEmpty(t, peers, "NetworkPolicy %s rule %d: the peer selector matches no workload", name, i)
							for _, id := range peers {
								sources = append(sources, appName(id))
							}
						}
						require.NotEmpty(t, rule.Ports, "NetworkPolicy %s rule %d: name the ports", name, i)
						for _, port := range rule.Ports {
							require.NotNil(t, port.Port, "NetworkPolicy %s rule %d: port", name, i)
							number, ok := int32(0), false
							for _, c := range containers {
								if n, found := resolvePort(c, *port.Port); found {
									number, ok = n, true
								}
							}
							require.True(t, ok, "NetworkPolicy %s: port %s is no container port of %s", name, port.Port.String(), target)
							require.True(t, port.Protocol == nil || *port.Protocol == corev1.ProtocolTCP, "NetworkPolicy %s: TCP", name)
							for _, src := range sources {
								got[target] = append(got[target], fmt.Sprintf("%s:%d", src, number))
							}
						}
					}
				}
			}

			want := wantIngress()
			for id := range workloads {
				require.True(t, isolated[id], "%s is selected by no NetworkPolicy: it would accept any connection", id)
				w, ok := want[id]
				require.True(t, ok, "%s has no entry in wantIngress", id)
				g := got[id]
				slices.Sort(g)
				g = slices.Compact(g)
				require.Equal(t, w, g, "who may connect to %s", id)
			}
		})
	}
}
