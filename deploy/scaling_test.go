package deploy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// poolLabel tells worker pools apart (deploy/pool).
const poolLabel = "parley.dev/pool"

// scalingMetric is the worker gauge the autoscalers read: provider calls running, by
// component (services/provider-worker/internal/serve/metrics.go).
const scalingMetric = "parley_worker_inflight"

// defaultConcurrency is WORKER_CONCURRENCY's default: the slots of one worker.
const defaultConcurrency = 64

// scaledObject is the part of a KEDA ScaledObject (keda.sh/v1alpha1) that Parley writes,
// decoded strictly: a field KEDA does not know fails the test as a typo would.
type scaledObject struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels,omitempty"`
	} `json:"metadata"`
	Spec struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount *int32 `json:"minReplicaCount"`
		MaxReplicaCount *int32 `json:"maxReplicaCount"`
		PollingInterval int32  `json:"pollingInterval"`
		CooldownPeriod  int32  `json:"cooldownPeriod"`
		Triggers        []struct {
			Type     string            `json:"type"`
			Metadata map[string]string `json:"metadata"`
		} `json:"triggers"`
	} `json:"spec"`
}

func decodeScaledObject(t *testing.T, doc []byte) *scaledObject {
	t.Helper()
	var so scaledObject
	require.NoError(t, yaml.UnmarshalStrict(doc, &so), "strict decode of ScaledObject:\n%s", doc)
	require.Equal(t, "keda.sh/v1alpha1", so.APIVersion)
	require.Equal(t, "ScaledObject", so.Kind)
	return &so
}

// componentFiles lists the component names of the files in components/.
func componentFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("components", "*.yaml"))
	require.NoError(t, err)
	var out []string
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		doc, err := os.ReadFile(f)
		require.NoError(t, err)
		var comp daprComponent
		require.NoError(t, yaml.UnmarshalStrict(doc, &comp), f)
		require.Equal(t, strings.TrimSuffix(filepath.Base(f), ".yaml"), comp.Metadata.Name, "%s: file name and component name differ", f)
		out = append(out, comp.Metadata.Name)
	}
	require.NotEmpty(t, out)
	return out
}

// poolDeployments returns the worker pools of r by component.
func poolDeployments(r *rendered) map[string]*appsv1.Deployment {
	out := map[string]*appsv1.Deployment{}
	for _, d := range r.deployments {
		if c, ok := d.Spec.Template.Labels[poolLabel]; ok {
			out[c] = d
		}
	}
	return out
}

// secretsUsed lists every Secret a pod template reads: volumes, projections, env.
func secretsUsed(spec corev1.PodSpec) []string {
	var out []string
	for _, v := range spec.Volumes {
		if v.Secret != nil {
			out = append(out, v.Secret.SecretName)
		}
		if v.Projected != nil {
			for _, src := range v.Projected.Sources {
				if src.Secret != nil {
					out = append(out, src.Secret.Name)
				}
			}
		}
	}
	for _, c := range spec.Containers {
		for _, e := range c.EnvFrom {
			if e.SecretRef != nil {
				out = append(out, e.SecretRef.Name)
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				out = append(out, e.ValueFrom.SecretKeyRef.Name)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestPools checks, in every overlay with worker pools, that each component file has its
// pool, serving that component only, with only its component file and its own NATS user.
func TestPools(t *testing.T) {
	t.Parallel()
	components := componentFiles(t)
	for _, tc := range overlayCases() {
		if !tc.pools {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := render(t, tc.dir)
			pools := poolDeployments(r)
			got := make([]string, 0, len(pools))
			for c := range pools {
				got = append(got, c)
			}
			slices.Sort(got)
			require.Equal(t, components, got, "one pool per component file of components/")
			shared := generatedName(r.configMaps, "parley-components")
			require.NotEmpty(t, shared)
			for c, d := range pools {
				t.Run(c, func(t *testing.T) {
					require.Equal(t, "provider-worker-"+c, d.Name)
					require.Equal(t, c, d.Spec.Selector.MatchLabels[poolLabel], "the selector tells the pool apart")
					require.Equal(t, "provider-worker", d.Spec.Selector.MatchLabels["app.kubernetes.io/name"])
					spec := d.Spec.Template.Spec
					require.Len(t, spec.Containers, 1)
					ctr := spec.Containers[0]
					image, _, _ := strings.Cut(ctr.Image, ":")
					require.Equal(t, "parley/provider-worker", image)
					wc, ok := envValue(ctr, "WORKER_COMPONENTS")
					require.True(t, ok, "WORKER_COMPONENTS")
					require.Equal(t, c, wc.Value)
					addr, _ := envValue(ctr, "RPC_ADDR")
					require.Equal(t, "0.0.0.0:3530", addr.Value)
					require.Contains(t, envFromConfigMaps(ctr), generatedName(r.configMaps, "parley-config"))

					// Only its own component file, from the shared ConfigMap.
					var mounted bool
					for _, m := range ctr.VolumeMounts {
						if m.MountPath != componentsDir {
							continue
						}
						mounted = true
						require.True(t, m.ReadOnly)
						vol := volume(spec, m.Name)
						require.NotNil(t, vol)
						require.NotNil(t, vol.ConfigMap)
						require.Equal(t, shared, vol.ConfigMap.Name)
						require.Equal(t, []corev1.KeyToPath{{Key: c + ".yaml", Path: c + ".yaml"}}, vol.ConfigMap.Items)
						_, ok := r.configMaps[shared].Data[c+".yaml"]
						require.True(t, ok, "ConfigMap %s has no %s.yaml", shared, c)
					}
					require.True(t, mounted, "components mount")

					// Only its own secrets: its NATS user's seed (echo reads no other), and the
					// workers' certificate (a pool's workers are provider-worker to the others).
					user := "parley-nats-provider-worker-" + c
					if !slices.Contains(tc.external, user) {
						user = generatedName(r.secrets, user)
						require.NotEmpty(t, user, "no Secret parley-nats-provider-worker-%s", c)
						require.Contains(t, string(r.secrets[user].Data["seed"]), "SU")
					}
					require.ElementsMatch(t, []string{user, "parley-tls-provider-worker"}, secretsUsed(spec), "the Secrets pool %s reads", c)
					seed, _ := envValue(ctr, "NATS_NKEY_SEED_FILE")
					require.Equal(t, "/etc/parley/nats/seed", seed.Value)

					// Its NATS user may join only its component's queue group (libs/natsauth).
					if tc.deps {
						auth := r.configMaps[generatedName(r.configMaps, "nats-auth")].Data["auth.conf"]
						block := regexp.MustCompile(`(?s)# provider-worker-` + regexp.QuoteMeta(c) + ` \(provider-worker, components ` + regexp.QuoteMeta(c) + `\).*?\n    }`).FindString(auth)
						require.NotEmpty(t, block, "auth.conf has no user provider-worker-%s", c)
						// and read its own inbox (credits and cancels of streamed answers).
						// It announces itself on its component's presence subject only.
						require.Contains(t, block, `publish: {allow: ["parley.workers.`+c+`"]}`)
						require.Regexp(t, `subscribe: \{allow: \["parley\.provider\.`+regexp.QuoteMeta(c)+` parley\.provider\.`+regexp.QuoteMeta(c)+`", "_INBOX\.U[A-Z2-7]{55}\.>"\]\}`, block)
					}

					// Draining: the kubelet waits longer than the worker's stop timeout.
					require.Greater(t, *spec.TerminationGracePeriodSeconds, int64(minGracePeriod))
					// Spread over nodes and zones, counting this pool's pods only.
					require.Len(t, spec.TopologySpreadConstraints, 2)
					for _, tsc := range spec.TopologySpreadConstraints {
						sel, err := metav1.LabelSelectorAsSelector(tsc.LabelSelector)
						require.NoError(t, err)
						require.True(t, sel.Matches(labels.Set(d.Spec.Template.Labels)), "topology spread of %s", d.Name)
						for other, od := range pools {
							if other != c {
								require.False(t, sel.Matches(labels.Set(od.Spec.Template.Labels)), "topology spread of %s counts pool %s", d.Name, other)
							}
						}
					}
				})
			}
		})
	}
}

// TestAutoscalers renders each pool's KEDA and HPA variants: both target the pool's
// Deployment and scale on the slots in use of its component, with the same threshold.
func TestAutoscalers(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile(filepath.Join("..", "services", "provider-worker", "internal", "serve", "metrics.go"))
	require.NoError(t, err)
	require.Contains(t, string(src), `Name: "`+scalingMetric+`"`, "the worker no longer exports %s", scalingMetric)
	require.Contains(t, string(src), `[]string{"component"}`, "the worker's metrics lost their component label")

	for _, c := range componentFiles(t) {
		t.Run(c, func(t *testing.T) {
			t.Parallel()
			keda := render(t, filepath.Join("pools", c, "keda"))
			hpaRender := render(t, filepath.Join("pools", c, "hpa"))
			deployment := "provider-worker-" + c

			require.Len(t, keda.scaled, 1)
			so := keda.scaled[deployment]
			require.NotNil(t, so, "ScaledObject %s", deployment)
			require.Equal(t, "Deployment", so.Spec.ScaleTargetRef.Kind)
			require.Equal(t, "apps/v1", so.Spec.ScaleTargetRef.APIVersion)
			require.Equal(t, deployment, so.Spec.ScaleTargetRef.Name)
			require.Contains(t, keda.deployments, deployment)
			require.Len(t, so.Spec.Triggers, 1)
			trig := so.Spec.Triggers[0]
			require.Equal(t, "prometheus", trig.Type)
			require.Equal(t, fmt.Sprintf(`sum(%s{component=%q})`, scalingMetric, c), trig.Metadata["query"])
			require.NotEmpty(t, trig.Metadata["serverAddress"])
			threshold, err := strconv.Atoi(trig.Metadata["threshold"])
			require.NoError(t, err)
			require.Positive(t, threshold)
			require.Less(t, threshold, defaultConcurrency, "scale before every slot is taken")
			require.NotNil(t, so.Spec.MinReplicaCount)
			require.NotNil(t, so.Spec.MaxReplicaCount)
			require.Greater(t, *so.Spec.MaxReplicaCount, *so.Spec.MinReplicaCount)
			// Zero only for a component with fallbacks to serve during a cold start.
			doc, err := os.ReadFile(filepath.Join("components", c+".yaml"))
			require.NoError(t, err)
			if !strings.Contains(string(doc), "name: fallbacks") {
				require.Positive(t, *so.Spec.MinReplicaCount, "%s has no fallbacks: its pool must not scale to zero", c)
			}

			require.Len(t, hpaRender.hpas, 1)
			hpa := hpaRender.hpas[deployment]
			require.NotNil(t, hpa, "HorizontalPodAutoscaler %s", deployment)
			require.Equal(t, "Deployment", hpa.Spec.ScaleTargetRef.Kind)
			require.Equal(t, deployment, hpa.Spec.ScaleTargetRef.Name)
			require.Contains(t, hpaRender.deployments, deployment)
			require.Len(t, hpa.Spec.Metrics, 1)
			m := hpa.Spec.Metrics[0]
			require.NotNil(t, m.Pods, "a Pods metric from the custom metrics API")
			require.Equal(t, scalingMetric, m.Pods.Metric.Name)
			require.Equal(t, map[string]string{"component": c}, m.Pods.Metric.Selector.MatchLabels)
			require.NotNil(t, m.Pods.Target.AverageValue)
			require.Equal(t, int64(threshold), m.Pods.Target.AverageValue.Value(), "KEDA and HPA thresholds agree")
			require.Empty(t, hpaRender.scaled, "never KEDA and an HPA on one Deployment")
			require.Empty(t, keda.hpas, "never KEDA and an HPA on one Deployment")
		})
	}
}

// TestDisruptionBudgets checks that every PodDisruptionBudget of every overlay selects
// the pods of exactly one workload, and that the router and every pool have one where
// they run replicated (full).
func TestDisruptionBudgets(t *testing.T) {
	t.Parallel()
	for _, tc := range overlayCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := render(t, tc.dir)
			workloads := r.workloads()
			covered := map[string]string{}
			for name, pdb := range r.pdbs {
				require.True(t, (pdb.Spec.MaxUnavailable == nil) != (pdb.Spec.MinAvailable == nil), "PDB %s: one of maxUnavailable, minAvailable", name)
				sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
				require.NoError(t, err)
				var selected []string
				for id, tmpl := range workloads {
					if sel.Matches(labels.Set(tmpl.Labels)) {
						selected = append(selected, id)
					}
				}
				require.Len(t, selected, 1, "PDB %s selects %v", name, selected)
				covered[selected[0]] = name
			}
			if !tc.natsCluster {
				return
			}
			require.Equal(t, "router", covered["Deployment/router"])
			require.Equal(t, "nats", covered["StatefulSet/nats"])
			for c := range poolDeployments(r) {
				require.Equal(t, "provider-worker-"+c, covered["Deployment/provider-worker-"+c])
			}
			router := r.deployments["router"].Spec.Template.Spec
			require.NotNil(t, router.Containers[0].Lifecycle, "router preStop")
			require.NotNil(t, router.Containers[0].Lifecycle.PreStop.Sleep, "router preStop sleep")
			// preStop plus the fx stop timeout fit in the grace period.
			require.Greater(t, *router.TerminationGracePeriodSeconds, router.Containers[0].Lifecycle.PreStop.Sleep.Seconds+minGracePeriod)
			require.Len(t, router.TopologySpreadConstraints, 2)
		})
	}
}

// TestNATSCluster checks the three-node NATS of the full overlay: replicas, one per node,
// routes to every server on its cluster port, and three replicas of the audit stream, the
// cache bucket and the rate-limit bucket through the services' settings.
func TestNATSCluster(t *testing.T) {
	t.Parallel()
	r := render(t, filepath.Join("overlays", "full"))
	sts, ok := r.statefulSets["nats"]
	require.True(t, ok, "StatefulSet nats")
	require.NotNil(t, sts.Spec.Replicas)
	replicas := int(*sts.Spec.Replicas)
	require.Equal(t, 3, replicas)
	tmpl := sts.Spec.Template
	pods := labels.Set(tmpl.Labels)

	aff := tmpl.Spec.Affinity
	require.NotNil(t, aff)
	require.NotNil(t, aff.PodAntiAffinity)
	terms := aff.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution
	require.Len(t, terms, 1, "required anti-affinity: never two servers on one node")
	require.Equal(t, "kubernetes.io/hostname", terms[0].TopologyKey)
	sel, err := metav1.LabelSelectorAsSelector(terms[0].LabelSelector)
	require.NoError(t, err)
	require.True(t, sel.Matches(pods))
	require.NotEmpty(t, sts.Spec.VolumeClaimTemplates, "each server keeps its JetStream store")

	headless, ok := r.services[sts.Spec.ServiceName]
	require.True(t, ok, "Service %s", sts.Spec.ServiceName)
	require.Equal(t, corev1.ClusterIPNone, headless.Spec.ClusterIP)
	require.True(t, headless.Spec.PublishNotReadyAddresses)
	require.True(t, labels.SelectorFromSet(headless.Spec.Selector).Matches(pods))
	client, ok := r.services["nats"]
	require.True(t, ok)
	require.True(t, labels.SelectorFromSet(client.Spec.Selector).Matches(pods))

	ctr := tmpl.Spec.Containers[0]
	clusterPort, ok := resolvePort(ctr, intOrName("cluster"))
	require.True(t, ok, "container port cluster")
	podName, ok := envValue(ctr, "POD_NAME")
	require.True(t, ok)
	require.Equal(t, "metadata.name", podName.ValueFrom.FieldRef.FieldPath)

	var conf string
	for _, v := range tmpl.Spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, src := range v.Projected.Sources {
			if src.ConfigMap != nil {
				conf = r.configMaps[src.ConfigMap.Name].Data["nats.conf"]
			}
			if src.Secret != nil {
				require.Equal(t, "parley-nats-auth", src.Secret.Name, "the users come from the Secret parley-nats-auth")
			}
		}
	}
	require.NotEmpty(t, conf, "nats.conf")
	require.Contains(t, conf, "jetstream {")
	require.Contains(t, conf, "include ./auth.conf")
	require.NotContains(t, conf, "no_auth_user")
	require.Regexp(t, `(?m)^max_payload: 16777216$`, conf)
	require.Regexp(t, `(?m)^server_name: \$POD_NAME$`, conf)
	require.Contains(t, conf, fmt.Sprintf("port: %d", clusterPort))
	routes := regexp.MustCompile(`nats://([a-z0-9-]+)\.([a-z0-9-]+):(\d+)`).FindAllStringSubmatch(conf, -1)
	require.Len(t, routes, replicas, "a route to every server")
	for i, m := range routes {
		require.Equal(t, fmt.Sprintf("%s-%d", sts.Name, i), m[1])
		require.Equal(t, headless.Name, m[2])
		require.Equal(t, strconv.Itoa(int(clusterPort)), m[3])
	}

	config := r.configMaps[generatedName(r.configMaps, "parley-config")].Data
	require.Equal(t, strconv.Itoa(replicas), config["AUDIT_STREAM_REPLICAS"], "the audit stream on every server")
	require.Equal(t, strconv.Itoa(replicas), config["CACHE_REPLICAS"], "the cache bucket on every server")
	require.Equal(t, strconv.Itoa(replicas), config["ROUTER_LIMITS_REPLICAS"], "the rate-limit bucket on every server")
	require.Equal(t, "nats://nats:4222", config["NATS_URL"])

	pdb := r.pdbs["nats"]
	require.NotNil(t, pdb)
	require.NotNil(t, pdb.Spec.MinAvailable)
	require.Equal(t, replicas/2+1, pdb.Spec.MinAvailable.IntValue(), "a voluntary disruption keeps the quorum")
}

func intOrName(name string) intstr.IntOrString { return intstr.FromString(name) }
