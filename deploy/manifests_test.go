package deploy_test

import (
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// componentsDir is where router and provider-worker read Dapr component YAML.
const componentsDir = "/etc/parley/components"

// minGracePeriod is the fx stop timeout: the kubelet must wait longer than this
// before it kills a container.
const minGracePeriod = 20

// serviceSpec is what the manifests must provide for one service of services/.
type serviceSpec struct {
	// ports are the ports of DESIGN.md; the first one serves /healthz and /readyz.
	ports []int32
	// components is set when the service reads Dapr components from componentsDir.
	components bool
	// database is set when the service needs DATABASE_URL from the Secret parley-db.
	database bool
	// nats is set when the service connects to NATS, as its own user: the seed in the
	// Secret parley-nats-<service>.
	nats bool
	// seal is the audit seal key the service reads (docs/security.md, "The sealed audit
	// copy"), when it reads one.
	seal *sealKey
}

// sealKey is an audit seal key file: the setting naming it, and the Secret and key it
// comes from.
type sealKey struct {
	env, secret, key string
}

// The audit seal key pair's Secrets: the private key is mounted in audit alone.
const (
	sealPrivateSecret = "parley-audit-seal"
	sealPublicSecret  = "parley-audit-seal-public"
)

// serviceSpecs lists every service with its expectations, by directory name.
func serviceSpecs() map[string]serviceSpec {
	return map[string]serviceSpec{
		"router": {ports: []int32{3500, 50001}, components: true, nats: true,
			seal: &sealKey{env: "ROUTER_AUDIT_SEAL_KEY_FILE", secret: sealPublicSecret, key: "audit.pub"}},
		"pii-scrubber":    {ports: []int32{3510}},
		"cache":           {ports: []int32{3520}, nats: true},
		"provider-worker": {ports: []int32{3530}, components: true, nats: true},
		"audit": {ports: []int32{3540}, database: true, nats: true,
			seal: &sealKey{env: "AUDIT_SEAL_KEY_FILE", secret: sealPrivateSecret, key: "audit.key"}},
	}
}

// overlayCase is one overlay and what its rendering must hold.
type overlayCase struct {
	name string
	dir  string
	// replicas is the wanted replica count by Deployment name.
	replicas map[string]int32
	// deps is set when the overlay runs NATS and PostgreSQL itself.
	deps bool
	// external names Secrets that the overlay expects to exist in the cluster.
	external []string
	// readOnlyRoot is the wanted readOnlyRootFilesystem of the service containers.
	readOnlyRoot bool
	// pools is set when workers run as one pool per component file (deploy/pools)
	// instead of the shared provider-worker.
	pools bool
	// natsCluster is set when the overlay runs the three-node NATS of nats-cluster/.
	natsCluster bool
}

// overlayCases lists every overlay under overlays/.
func overlayCases() []overlayCase {
	return []overlayCase{
		{
			name:         "dev",
			dir:          "overlays/dev",
			replicas:     map[string]int32{"router": 1, "pii-scrubber": 1, "cache": 1, "provider-worker-echo": 1, "audit": 1},
			deps:         true,
			readOnlyRoot: false,
			pools:        true,
		},
		{
			name:     "prod",
			dir:      "overlays/prod",
			replicas: map[string]int32{"router": 2, "pii-scrubber": 1, "cache": 1, "provider-worker": 3, "audit": 1},
			deps:     false,
			external: []string{"parley-db", "parley-nats-router", "parley-nats-cache", "parley-nats-audit", "parley-nats-provider-worker",
				sealPrivateSecret, sealPublicSecret},
			readOnlyRoot: true,
		},
		{
			name:     "full",
			dir:      "overlays/full",
			replicas: map[string]int32{"router": 3, "pii-scrubber": 1, "cache": 1, "provider-worker-echo": 2, "audit": 1},
			external: []string{
				"parley-db", "parley-nats-router", "parley-nats-cache", "parley-nats-audit",
				"parley-nats-provider-worker-echo", "parley-nats-auth", sealPrivateSecret, sealPublicSecret,
			},
			readOnlyRoot: true,
			pools:        true,
			natsCluster:  true,
		},
	}
}

// rendered is an overlay's output, decoded into the Kubernetes Go types and keyed by
// object name (generated names keep their hash suffix).
type rendered struct {
	deployments  map[string]*appsv1.Deployment
	statefulSets map[string]*appsv1.StatefulSet
	services     map[string]*corev1.Service
	configMaps   map[string]*corev1.ConfigMap
	secrets      map[string]*corev1.Secret
	policies     map[string]*networkingv1.NetworkPolicy
	certificates map[string]*certificate
	issuers      map[string]*issuer
	pdbs         map[string]*policyv1.PodDisruptionBudget
	hpas         map[string]*autoscalingv2.HorizontalPodAutoscaler
	scaled       map[string]*scaledObject
}

// certificate is the part of a cert-manager Certificate the tests read; decoding is
// strict, so any other field fails the test until it is added here.
type certificate struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		IsCA        bool     `json:"isCA"`
		CommonName  string   `json:"commonName"`
		SecretName  string   `json:"secretName"`
		Duration    string   `json:"duration"`
		RenewBefore string   `json:"renewBefore"`
		URIs        []string `json:"uris"`
		DNSNames    []string `json:"dnsNames"`
		Usages      []string `json:"usages"`
		PrivateKey  struct {
			Algorithm      string `json:"algorithm"`
			Size           int    `json:"size"`
			RotationPolicy string `json:"rotationPolicy"`
		} `json:"privateKey"`
		IssuerRef struct {
			Group string `json:"group"`
			Kind  string `json:"kind"`
			Name  string `json:"name"`
		} `json:"issuerRef"`
	} `json:"spec"`
}

// issuer is a cert-manager Issuer: self-signed or a CA from a Secret.
type issuer struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		SelfSigned *struct{} `json:"selfSigned"`
		CA         *struct {
			SecretName string `json:"secretName"`
		} `json:"ca"`
	} `json:"spec"`
}

// workloads returns the pod template of every Deployment and StatefulSet by
// "Kind/name".
func (r *rendered) workloads() map[string]corev1.PodTemplateSpec {
	out := make(map[string]corev1.PodTemplateSpec)
	for name, d := range r.deployments {
		out["Deployment/"+name] = d.Spec.Template
	}
	for name, s := range r.statefulSets {
		out["StatefulSet/"+name] = s.Spec.Template
	}
	return out
}

// generatedName finds the object that kustomize generated as base (base plus a
// "-<hash>" suffix) among names; it returns "" when there is none.
func generatedName[T any](objs map[string]T, base string) string {
	for name := range objs {
		if name == base {
			return name
		}
		if suffix, ok := strings.CutPrefix(name, base+"-"); ok && len(suffix) == 10 && !strings.Contains(suffix, "-") {
			return name
		}
	}
	return ""
}

// strictDecoder decodes YAML or JSON into the registered Kubernetes types and
// rejects unknown and duplicate fields.
func strictDecoder(t *testing.T) runtime.Decoder {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme,
		appsv1.AddToScheme,
		autoscalingv2.AddToScheme,
		networkingv1.AddToScheme,
		policyv1.AddToScheme,
	} {
		require.NoError(t, add(scheme))
	}
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
}

// render runs kustomize on dir, offline, and strict-decodes every object.
func render(t *testing.T, dir string) *rendered {
	t.Helper()
	abs, err := filepath.Abs(dir)
	require.NoError(t, err)
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), abs)
	require.NoError(t, err, "kustomize build %s", dir)

	decoder := strictDecoder(t)
	r := &rendered{
		deployments:  make(map[string]*appsv1.Deployment),
		statefulSets: make(map[string]*appsv1.StatefulSet),
		services:     make(map[string]*corev1.Service),
		configMaps:   make(map[string]*corev1.ConfigMap),
		secrets:      make(map[string]*corev1.Secret),
		policies:     make(map[string]*networkingv1.NetworkPolicy),
		certificates: make(map[string]*certificate),
		issuers:      make(map[string]*issuer),
		pdbs:         make(map[string]*policyv1.PodDisruptionBudget),
		hpas:         make(map[string]*autoscalingv2.HorizontalPodAutoscaler),
		scaled:       make(map[string]*scaledObject),
	}
	require.NotEmpty(t, resources.Resources(), "%s renders nothing", dir)
	for _, res := range resources.Resources() {
		id := res.CurId().String()
		doc, err := res.AsYAML()
		require.NoError(t, err, id)
		if res.GetApiVersion() == "cert-manager.io/v1" {
			switch res.GetKind() {
			case "Certificate":
				var c certificate
				require.NoError(t, yaml.UnmarshalStrict(doc, &c), "strict decode of %s:\n%s", id, doc)
				r.certificates[c.Metadata.Name] = &c
			case "Issuer":
				var i issuer
				require.NoError(t, yaml.UnmarshalStrict(doc, &i), "strict decode of %s:\n%s", id, doc)
				r.issuers[i.Metadata.Name] = &i
			default:
				require.Failf(t, "unchecked kind", "%s: add checks for it in manifests_test.go", id)
			}
			continue
		}
		if res.GetKind() == "ScaledObject" {
			so := decodeScaledObject(t, doc)
			r.scaled[so.Metadata.Name] = so
			continue
		}
		obj, _, err := decoder.Decode(doc, nil, nil)
		require.NoError(t, err, "strict decode of %s:\n%s", id, doc)
		switch o := obj.(type) {
		case *appsv1.Deployment:
			r.deployments[o.Name] = o
		case *appsv1.StatefulSet:
			r.statefulSets[o.Name] = o
		case *corev1.Service:
			r.services[o.Name] = o
		case *corev1.ConfigMap:
			r.configMaps[o.Name] = o
		case *corev1.Secret:
			r.secrets[o.Name] = o
		case *networkingv1.NetworkPolicy:
			r.policies[o.Name] = o
		case *policyv1.PodDisruptionBudget:
			r.pdbs[o.Name] = o
		case *autoscalingv2.HorizontalPodAutoscaler:
			r.hpas[o.Name] = o
		default:
			require.Failf(t, "unchecked kind", "%s decodes to %T: add checks for it in manifests_test.go", id, obj)
		}
	}
	return r
}

// repoServices lists the service directories under services/ (those with a go.mod).
func repoServices(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join("..", "services"))
	require.NoError(t, err)
	var out []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if _, err := os.Stat(filepath.Join("..", "services", e.Name(), "go.mod")); err == nil {
			out = append(out, e.Name())
		}
	}
	require.NotEmpty(t, out, "no services found under ../services")
	return out
}

// resolvePort returns the container port number that p names, if any.
func resolvePort(c corev1.Container, p intstr.IntOrString) (int32, bool) {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

// envValue returns the literal value of the environment variable name in c.
func envValue(c corev1.Container, name string) (corev1.EnvVar, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e, true
		}
	}
	return corev1.EnvVar{}, false
}

func TestOverlays(t *testing.T) {
	t.Parallel()
	for _, tc := range overlayCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := render(t, tc.dir)

			t.Run("workloads are safe to run", func(t *testing.T) {
				t.Parallel()
				testWorkloads(t, r)
			})
			t.Run("every service is deployed and exposed", func(t *testing.T) {
				t.Parallel()
				testServices(t, r, tc)
			})
			t.Run("replicas", func(t *testing.T) {
				t.Parallel()
				for name, want := range tc.replicas {
					d, ok := r.deployments[name]
					require.True(t, ok, "no Deployment %s", name)
					require.NotNil(t, d.Spec.Replicas, name)
					require.Equal(t, want, *d.Spec.Replicas, "replicas of %s", name)
				}
			})
			t.Run("components ConfigMap holds echo.yaml", func(t *testing.T) {
				t.Parallel()
				testComponents(t, r)
			})
			t.Run("references resolve", func(t *testing.T) {
				t.Parallel()
				testReferences(t, r, tc.external)
			})
			t.Run("dependencies", func(t *testing.T) {
				t.Parallel()
				testDeps(t, r, tc)
			})
			t.Run("service identity", func(t *testing.T) {
				t.Parallel()
				testIdentity(t, r)
			})
		})
	}
}

// testWorkloads checks every pod template: probes, resource limits, grace period
// and a non-root security context.
func testWorkloads(t *testing.T, r *rendered) {
	t.Helper()
	require.NotEmpty(t, r.deployments)
	for id, tmpl := range r.workloads() {
		t.Run(id, func(t *testing.T) {
			t.Parallel()
			spec := tmpl.Spec
			require.NotNil(t, spec.TerminationGracePeriodSeconds, "terminationGracePeriodSeconds")
			require.Greater(t, *spec.TerminationGracePeriodSeconds, int64(minGracePeriod), "terminationGracePeriodSeconds")

			pod := spec.SecurityContext
			require.NotNil(t, pod, "pod securityContext")
			require.NotNil(t, pod.RunAsNonRoot, "runAsNonRoot")
			require.True(t, *pod.RunAsNonRoot, "runAsNonRoot")
			require.NotNil(t, pod.RunAsUser, "runAsUser (numeric, so the kubelet can verify non-root)")
			require.NotZero(t, *pod.RunAsUser, "runAsUser")

			require.NotEmpty(t, spec.Containers)
			for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
				require.NotNil(t, c.ReadinessProbe, "%s: readinessProbe", c.Name)
				require.NotNil(t, c.LivenessProbe, "%s: livenessProbe", c.Name)
				for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
					limit, ok := c.Resources.Limits[res]
					require.True(t, ok, "%s: limits.%s", c.Name, res)
					require.False(t, limit.IsZero(), "%s: limits.%s", c.Name, res)
					request, ok := c.Resources.Requests[res]
					require.True(t, ok, "%s: requests.%s", c.Name, res)
					require.LessOrEqual(t, request.Cmp(limit), 0, "%s: requests.%s above its limit", c.Name, res)
				}
				sc := c.SecurityContext
				require.NotNil(t, sc, "%s: securityContext", c.Name)
				if sc.RunAsUser != nil {
					require.NotZero(t, *sc.RunAsUser, "%s: runAsUser", c.Name)
				}
				if sc.RunAsNonRoot != nil {
					require.True(t, *sc.RunAsNonRoot, "%s: runAsNonRoot", c.Name)
				}
				require.NotNil(t, sc.AllowPrivilegeEscalation, "%s: allowPrivilegeEscalation", c.Name)
				require.False(t, *sc.AllowPrivilegeEscalation, "%s: allowPrivilegeEscalation", c.Name)
				require.False(t, sc.Privileged != nil && *sc.Privileged, "%s: privileged", c.Name)
			}
		})
	}
}

// testServices checks that every service under services/ has a Deployment running
// its image and probed on its port, and a Service that reaches each of its ports.
func testServices(t *testing.T, r *rendered, tc overlayCase) {
	t.Helper()
	specs := serviceSpecs()
	found := repoServices(t)
	for name := range specs {
		require.Contains(t, found, name, "manifests_test.go expects a service that services/ does not have")
	}
	componentsConfig := generatedName(r.configMaps, "parley-components")
	for _, name := range found {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			spec, ok := specs[name]
			require.True(t, ok, "services/%s has no entry in serviceSpecs: add its ports (DESIGN.md) and manifests", name)

			if name == "provider-worker" && tc.pools {
				// Served by the pools: TestPools checks them.
				_, shared := r.deployments[name]
				require.False(t, shared, "the shared provider-worker runs beside the pools")
				require.NotEmpty(t, poolDeployments(r), "no worker pool")
				return
			}
			d, ok := r.deployments[name]
			require.True(t, ok, "no Deployment %s", name)
			require.Len(t, d.Spec.Template.Spec.Containers, 1)
			c := d.Spec.Template.Spec.Containers[0]
			image, _, _ := strings.Cut(c.Image, ":")
			require.Equal(t, "parley/"+name, image, "image of %s", name)
			require.NotNil(t, d.Spec.Selector)
			for k, v := range d.Spec.Selector.MatchLabels {
				require.Equal(t, v, d.Spec.Template.Labels[k], "selector label %s", k)
			}

			for _, probe := range []struct {
				name  string
				probe *corev1.Probe
				path  string
			}{
				{"readinessProbe", c.ReadinessProbe, "/readyz"},
				{"livenessProbe", c.LivenessProbe, "/healthz"},
			} {
				require.NotNil(t, probe.probe, probe.name)
				require.NotNil(t, probe.probe.HTTPGet, "%s: httpGet", probe.name)
				require.Equal(t, probe.path, probe.probe.HTTPGet.Path, probe.name)
				port, ok := resolvePort(c, probe.probe.HTTPGet.Port)
				require.True(t, ok, "%s: port %s is not a container port", probe.name, probe.probe.HTTPGet.Port.String())
				require.Equal(t, spec.ports[0], port, "%s port", probe.name)
			}

			rpcAddr, ok := envValue(c, "RPC_ADDR")
			require.True(t, ok, "RPC_ADDR")
			// Services bind loopback by default; in a pod they must listen on every
			// interface, so the manifests say so explicitly.
			require.Equal(t, "0.0.0.0:"+strconv.Itoa(int(spec.ports[0])), rpcAddr.Value, "RPC_ADDR")
			if len(spec.ports) > 1 {
				// The router's Dapr gRPC port, served by grpc-go (gRPC only).
				extra, ok := envValue(c, "RPC_GRPC_ADDRS")
				require.True(t, ok, "RPC_GRPC_ADDRS")
				var want []string
				for _, p := range spec.ports[1:] {
					want = append(want, "0.0.0.0:"+strconv.Itoa(int(p)))
				}
				require.Equal(t, strings.Join(want, ","), extra.Value, "RPC_GRPC_ADDRS")
			}
			require.Contains(t, envFromConfigMaps(c), generatedName(r.configMaps, "parley-config"), "envFrom parley-config")

			svc, ok := r.services[name]
			require.True(t, ok, "no Service %s", name)
			for k, v := range svc.Spec.Selector {
				require.Equal(t, v, d.Spec.Template.Labels[k], "Service %s selects label %s=%s, which the pods lack", name, k, v)
			}
			require.NotEmpty(t, svc.Spec.Selector)
			for _, want := range spec.ports {
				var exposed bool
				for _, sp := range svc.Spec.Ports {
					if sp.Port != want {
						continue
					}
					target, ok := resolvePort(c, sp.TargetPort)
					require.True(t, ok, "Service %s port %d: targetPort %s is not a container port", name, want, sp.TargetPort.String())
					require.Equal(t, want, target, "Service %s port %d targets another container port", name, want)
					exposed = true
				}
				require.True(t, exposed, "Service %s does not expose port %d", name, want)
			}

			var mounted bool
			for _, m := range c.VolumeMounts {
				if m.MountPath != componentsDir {
					continue
				}
				mounted = true
				require.True(t, m.ReadOnly, "components mount must be read-only")
				vol := volume(d.Spec.Template.Spec, m.Name)
				require.NotNil(t, vol, "volume %s", m.Name)
				require.NotNil(t, vol.ConfigMap, "volume %s: configMap", m.Name)
				require.Equal(t, componentsConfig, vol.ConfigMap.Name, "volume %s", m.Name)
			}
			require.Equal(t, spec.components, mounted, "mount of %s", componentsDir)

			dbURL, ok := envValue(c, "DATABASE_URL")
			require.Equal(t, spec.database, ok, "DATABASE_URL")
			if spec.database {
				require.NotNil(t, dbURL.ValueFrom, "DATABASE_URL must come from a Secret")
				require.NotNil(t, dbURL.ValueFrom.SecretKeyRef, "DATABASE_URL must come from a Secret")
				require.Equal(t, "url", dbURL.ValueFrom.SecretKeyRef.Key)
				want := "parley-db"
				if !slices.Contains(tc.external, "parley-db") {
					want = generatedName(r.secrets, "parley-db")
				}
				require.Equal(t, want, dbURL.ValueFrom.SecretKeyRef.Name)
			}

			seedFile, ok := envValue(c, "NATS_NKEY_SEED_FILE")
			require.Equal(t, spec.nats, ok, "NATS_NKEY_SEED_FILE")
			if spec.nats {
				var mount *corev1.VolumeMount
				for i, m := range c.VolumeMounts {
					if strings.HasPrefix(seedFile.Value, m.MountPath+"/") {
						mount = &c.VolumeMounts[i]
					}
				}
				require.NotNil(t, mount, "NATS_NKEY_SEED_FILE=%s is on no mount", seedFile.Value)
				require.True(t, mount.ReadOnly, "NATS credentials mount must be read-only")
				vol := volume(d.Spec.Template.Spec, mount.Name)
				require.NotNil(t, vol, "volume %s", mount.Name)
				require.NotNil(t, vol.Secret, "NATS credentials must come from a Secret")
				want := "parley-nats-" + name
				if !slices.Contains(tc.external, want) {
					want = generatedName(r.secrets, want)
				}
				require.Equal(t, want, vol.Secret.SecretName, "NATS credentials of %s", name)
				require.Equal(t, "seed", strings.TrimPrefix(seedFile.Value, mount.MountPath+"/"), "NATS_NKEY_SEED_FILE key")
				if sec, ok := r.secrets[want]; ok {
					require.Contains(t, string(sec.Data["seed"]), "SU", "Secret %s: seed is not a user nkey seed", want)
				}
			}

			testSealKey(t, r, tc, d.Spec.Template.Spec, spec.seal)

			sc := c.SecurityContext
			require.NotNil(t, sc)
			require.NotNil(t, sc.ReadOnlyRootFilesystem)
			require.Equal(t, tc.readOnlyRoot, *sc.ReadOnlyRootFilesystem, "readOnlyRootFilesystem")
		})
	}
}

// testSealKey checks a service's audit seal key: its setting names a file on a read-only
// mount of the key's Secret, and a service that reads none mounts neither Secret (the
// private key reaches audit alone).
func testSealKey(t *testing.T, r *rendered, tc overlayCase, spec corev1.PodSpec, want *sealKey) {
	t.Helper()
	c := spec.Containers[0]
	// mounted: the seal Secrets' mounts, by the Secret's name before kustomize's suffix.
	mounted := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		vol := volume(spec, m.Name)
		if vol == nil || vol.Secret == nil {
			continue
		}
		for _, name := range []string{sealPrivateSecret, sealPublicSecret} {
			if vol.Secret.SecretName == name || vol.Secret.SecretName == generatedName(r.secrets, name) {
				mounted[name] = m
			}
		}
	}
	for _, name := range []string{sealPrivateSecret, sealPublicSecret} {
		if want == nil || want.secret != name {
			_, ok := mounted[name]
			require.False(t, ok, "Secret %s mounted where it is not read", name)
		}
	}
	if want == nil {
		return
	}
	file, ok := envValue(c, want.env)
	require.True(t, ok, want.env)
	m, ok := mounted[want.secret]
	require.True(t, ok, "Secret %s is not mounted", want.secret)
	require.True(t, m.ReadOnly, "the seal key's mount must be read-only")
	require.Equal(t, m.MountPath+"/"+want.key, file.Value, want.env)
	if !slices.Contains(tc.external, want.secret) {
		sec := r.secrets[generatedName(r.secrets, want.secret)]
		require.NotNil(t, sec, "Secret %s is not rendered", want.secret)
		require.Contains(t, string(sec.Data[want.key]), "-----BEGIN ", "Secret %s: %s is not PEM", want.secret, want.key)
	}
}

// envFromConfigMaps returns the ConfigMaps that c takes its environment from.
func envFromConfigMaps(c corev1.Container) []string {
	var out []string
	for _, e := range c.EnvFrom {
		if e.ConfigMapRef != nil {
			out = append(out, e.ConfigMapRef.Name)
		}
	}
	return out
}

// volume returns the pod volume called name, or nil.
func volume(spec corev1.PodSpec, name string) *corev1.Volume {
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == name {
			return &spec.Volumes[i]
		}
	}
	return nil
}

// daprComponent is the part of a Dapr component that the test reads.
type daprComponent struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Type     string `json:"type"`
		Version  string `json:"version"`
		Metadata []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"metadata"`
	} `json:"spec"`
}

// testComponents checks the generated components ConfigMap and the shared
// configuration that points the services at it.
func testComponents(t *testing.T, r *rendered) {
	t.Helper()
	name := generatedName(r.configMaps, "parley-components")
	require.NotEmpty(t, name, "no ConfigMap parley-components")
	doc, ok := r.configMaps[name].Data["echo.yaml"]
	require.True(t, ok, "ConfigMap %s has no echo.yaml", name)

	var comp daprComponent
	require.NoError(t, yaml.UnmarshalStrict([]byte(doc), &comp))
	require.Equal(t, "dapr.io/v1alpha1", comp.APIVersion)
	require.Equal(t, "Component", comp.Kind)
	require.Equal(t, "echo", comp.Metadata.Name)
	require.Equal(t, "conversation.echo", comp.Spec.Type)
	require.Equal(t, "v1", comp.Spec.Version)
	require.Len(t, comp.Spec.Metadata, 1)
	require.Equal(t, "responseCacheTTL", comp.Spec.Metadata[0].Name)
	require.Equal(t, "10m", comp.Spec.Metadata[0].Value)

	config := generatedName(r.configMaps, "parley-config")
	require.NotEmpty(t, config, "no ConfigMap parley-config")
	require.Equal(t, componentsDir, r.configMaps[config].Data["COMPONENTS_DIR"])
}

// testReferences checks that every ConfigMap and Secret a pod uses is rendered
// (or is one of the external Secrets), including the keys it reads, and that the
// URLs in parley-config name rendered Services and their ports.
func testReferences(t *testing.T, r *rendered, external []string) {
	t.Helper()
	checkConfigMap := func(where, name, key string) {
		cm, ok := r.configMaps[name]
		require.True(t, ok, "%s: ConfigMap %s is not rendered", where, name)
		if key != "" {
			_, ok := cm.Data[key]
			require.True(t, ok, "%s: ConfigMap %s has no key %s", where, name, key)
		}
	}
	checkSecret := func(where, name, key string) {
		if slices.Contains(external, name) {
			return
		}
		if certificateFor(r, name) != nil {
			return // cert-manager writes it (checked by testIdentity)
		}
		s, ok := r.secrets[name]
		require.True(t, ok, "%s: Secret %s is not rendered", where, name)
		if key != "" {
			_, inData := s.Data[key]
			_, inString := s.StringData[key]
			require.True(t, inData || inString, "%s: Secret %s has no key %s", where, name, key)
		}
	}
	for id, tmpl := range r.workloads() {
		for _, v := range tmpl.Spec.Volumes {
			if v.ConfigMap != nil {
				checkConfigMap(id, v.ConfigMap.Name, "")
			}
			if v.Secret != nil {
				checkSecret(id, v.Secret.SecretName, "")
			}
			if v.Projected != nil {
				for _, src := range v.Projected.Sources {
					if src.ConfigMap != nil {
						checkConfigMap(id, src.ConfigMap.Name, "")
					}
					if src.Secret != nil {
						checkSecret(id, src.Secret.Name, "")
					}
				}
			}
		}
		for _, c := range tmpl.Spec.Containers {
			for _, e := range c.EnvFrom {
				if e.ConfigMapRef != nil {
					checkConfigMap(id, e.ConfigMapRef.Name, "")
				}
				if e.SecretRef != nil {
					checkSecret(id, e.SecretRef.Name, "")
				}
			}
			for _, e := range c.Env {
				if e.ValueFrom == nil {
					continue
				}
				if ref := e.ValueFrom.ConfigMapKeyRef; ref != nil {
					checkConfigMap(id, ref.Name, ref.Key)
				}
				if ref := e.ValueFrom.SecretKeyRef; ref != nil {
					checkSecret(id, ref.Name, ref.Key)
				}
			}
		}
	}

	config := r.configMaps[generatedName(r.configMaps, "parley-config")]
	require.NotNil(t, config, "no ConfigMap parley-config")
	keys := make([]string, 0, len(config.Data))
	for k := range config.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !strings.HasSuffix(k, "_URL") {
			continue
		}
		u, err := url.Parse(config.Data[k])
		require.NoError(t, err, k)
		host, portText, err := net.SplitHostPort(u.Host)
		require.NoError(t, err, "%s=%s needs an explicit port", k, config.Data[k])
		svc, ok := r.services[host]
		if !ok {
			// Only a service outside the overlay (managed NATS in prod) may be absent.
			require.Equal(t, "NATS_URL", k, "%s names Service %s, which is not rendered", k, host)
			_, dev := r.deployments["nats"]
			require.False(t, dev, "NATS runs in this overlay but NATS_URL does not name its Service")
			continue
		}
		port, err := strconv.Atoi(portText)
		require.NoError(t, err, k)
		require.True(t, slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return int(p.Port) == port }),
			"%s: Service %s has no port %d", k, host, port)
	}
}

// testDeps checks that NATS (with JetStream) and PostgreSQL are present exactly when
// the overlay runs them.
func testDeps(t *testing.T, r *rendered, tc overlayCase) {
	t.Helper()
	want := tc.deps
	nats, hasNATS := r.deployments["nats"]
	postgres, hasPostgres := r.statefulSets["postgres"]
	require.Equal(t, want, hasNATS, "Deployment nats")
	require.Equal(t, want, hasPostgres, "StatefulSet postgres")
	_, natsSvc := r.services["nats"]
	_, pgSvc := r.services["postgres"]
	_, natsCluster := r.statefulSets["nats"]
	require.Equal(t, tc.natsCluster, natsCluster, "StatefulSet nats (TestNATSCluster checks it)")
	require.Equal(t, want || tc.natsCluster, natsSvc, "Service nats")
	require.Equal(t, want, pgSvc, "Service postgres")
	if !want {
		return
	}

	natsC := nats.Spec.Template.Spec.Containers[0]
	require.True(t, strings.HasPrefix(natsC.Image, "nats:2."), "nats image %s", natsC.Image)
	// nats.conf (JetStream, then auth.conf with the users) beside auth.conf; both parse
	// as nats-server reads them in libs/natsauth's TestDevOverlay.
	require.Equal(t, []string{"-c", "/etc/nats/nats.conf"}, natsC.Args)
	files := map[string]string{}
	for _, v := range nats.Spec.Template.Spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, src := range v.Projected.Sources {
			if src.ConfigMap != nil {
				for k, text := range r.configMaps[src.ConfigMap.Name].Data {
					files[k] = text
				}
			}
		}
	}
	// TLS only, with a certificate from Parley's CA for the Service name the services
	// dial, and the services trust that CA (libs/natsauth's TestDevOverlay parses the block).
	var natsSecret string
	for _, v := range nats.Spec.Template.Spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, src := range v.Projected.Sources {
			if src.Secret != nil {
				natsSecret = src.Secret.Name
				paths := map[string]string{}
				for _, it := range src.Secret.Items {
					paths[it.Key] = it.Path
				}
				require.Equal(t, map[string]string{"tls.crt": "tls/tls.crt", "tls.key": "tls/tls.key"}, paths, "nats: Secret %s items", natsSecret)
			}
		}
	}
	require.Contains(t, files["nats.conf"], "tls {", "NATS must serve TLS")
	require.Contains(t, files["nats.conf"], `cert_file: "/etc/nats/tls/tls.crt"`)
	require.Contains(t, files["nats.conf"], `key_file: "/etc/nats/tls/tls.key"`)
	natsCert := certificateFor(r, natsSecret)
	require.NotNil(t, natsCert, "nats: no Certificate writes Secret %q", natsSecret)
	require.Contains(t, natsCert.Spec.DNSNames, "nats", "the services dial nats:4222")
	require.Contains(t, natsCert.Spec.Usages, "server auth")
	require.Equal(t, "parley-ca", natsCert.Spec.IssuerRef.Name, "Parley's CA, which the services trust")
	config := r.configMaps[generatedName(r.configMaps, "parley-config")]
	require.NotNil(t, config, "no ConfigMap parley-config")
	require.Equal(t, tlsDir+"/ca.crt", config.Data["NATS_TLS_CA_FILE"], "parley-config NATS_TLS_CA_FILE")

	require.Contains(t, files["nats.conf"], "jetstream {", "NATS must run with JetStream")
	require.Contains(t, files["nats.conf"], "include ./auth.conf")
	// The largest message, an audit event, needs more than NATS's default 1 MiB
	// (bus.MaxPayload in libs/bus; the router's 4 MiB body limit depends on it).
	require.Regexp(t, `(?m)^max_payload: 16777216$`, files["nats.conf"])
	require.Contains(t, files["auth.conf"], "authorization {")
	require.NotContains(t, files["auth.conf"], "no_auth_user")
	for _, name := range []string{"router", "cache", "audit", "provider-worker"} {
		require.Contains(t, files["auth.conf"], "# "+name+" (", "auth.conf has no user %s", name)
	}

	pgC := postgres.Spec.Template.Spec.Containers[0]
	require.True(t, strings.HasPrefix(pgC.Image, "postgres:15"), "postgres image %s", pgC.Image)
	password, ok := envValue(pgC, "POSTGRES_PASSWORD")
	require.True(t, ok, "POSTGRES_PASSWORD")
	require.Empty(t, password.Value, "POSTGRES_PASSWORD must not be a literal")
	require.NotNil(t, password.ValueFrom)
	require.NotNil(t, password.ValueFrom.SecretKeyRef, "POSTGRES_PASSWORD must come from a Secret")

	db := r.secrets[generatedName(r.secrets, "parley-db")]
	require.NotNil(t, db, "Secret parley-db")
	dbURL, err := url.Parse(string(db.Data["url"]))
	require.NoError(t, err)
	pgPassword := r.secrets[password.ValueFrom.SecretKeyRef.Name].Data[password.ValueFrom.SecretKeyRef.Key]
	gotPassword, _ := dbURL.User.Password()
	require.Equal(t, string(pgPassword), gotPassword, "parley-db url and the postgres Secret disagree on the password")
}

func TestProviderWorkerHPA(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile(filepath.Join("overlays", "prod", "provider-worker-hpa.yaml"))
	require.NoError(t, err)
	obj, _, err := strictDecoder(t).Decode(doc, nil, nil)
	require.NoError(t, err)
	hpa, ok := obj.(*autoscalingv2.HorizontalPodAutoscaler)
	require.True(t, ok, "decodes to %T", obj)

	prod := render(t, filepath.Join("overlays", "prod"))
	target := hpa.Spec.ScaleTargetRef
	require.Equal(t, "Deployment", target.Kind)
	require.Equal(t, "apps/v1", target.APIVersion)
	require.Contains(t, prod.deployments, target.Name)
	require.Equal(t, "provider-worker", target.Name)
	require.NotNil(t, hpa.Spec.MinReplicas)
	require.Equal(t, *prod.deployments[target.Name].Spec.Replicas, *hpa.Spec.MinReplicas,
		"the HPA floor should match the prod starting size")
	// The workers' slots in use, never CPU: a worker waiting on a provider uses none.
	require.Len(t, hpa.Spec.Metrics, 1)
	require.NotNil(t, hpa.Spec.Metrics[0].Pods)
	require.Equal(t, scalingMetric, hpa.Spec.Metrics[0].Pods.Metric.Name)
	require.NotNil(t, hpa.Spec.Metrics[0].Pods.Target.AverageValue)
	require.Less(t, hpa.Spec.Metrics[0].Pods.Target.AverageValue.Value(), int64(defaultConcurrency))
}

func TestStrictDecodeRejectsTypos(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		doc  string
		want string
	}{
		{
			name: "unknown field",
			doc: `apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      terminationGracePeriodSecs: 30
      containers: [{name: x, image: x}]
`,
			want: "terminationGracePeriodSecs",
		},
		{
			name: "duplicate field",
			doc: `apiVersion: v1
kind: ConfigMap
metadata: {name: x}
data: {a: "1"}
data: {b: "2"}
`,
			want: "data",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := strictDecoder(t).Decode([]byte(tt.doc), nil, nil)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

// trustDomain is the trust domain of the manifests' identities.
const trustDomain = "parley.local"

// tlsDir is where every service finds ca.crt, tls.crt and tls.key.
const tlsDir = "/etc/parley/tls"

// certificateFor returns the rendered Certificate that writes Secret name, or nil.
func certificateFor(r *rendered, secret string) *certificate {
	for _, c := range r.certificates {
		if c.Spec.SecretName == secret {
			return c
		}
	}
	return nil
}

// testIdentity checks mutual TLS inside the constellation: every service mounts a
// Secret written by a Certificate that names it (spiffe://parley.local/<service>),
// issued by a rendered CA issuer; the shared configuration turns mutual TLS on and
// points at the mounted files; the router calls the others over https; internal
// services are probed over HTTPS and the router's public port over HTTP; operators
// have an admin Certificate.
func testIdentity(t *testing.T, r *rendered) {
	t.Helper()
	config := r.configMaps[generatedName(r.configMaps, "parley-config")]
	require.NotNil(t, config, "no ConfigMap parley-config")
	for k, want := range map[string]string{
		"INTERNAL_TLS": "on", "TLS_TRUST_DOMAIN": trustDomain,
		"TLS_CA_FILE": tlsDir + "/ca.crt", "TLS_CERT_FILE": tlsDir + "/tls.crt", "TLS_KEY_FILE": tlsDir + "/tls.key",
	} {
		require.Equal(t, want, config.Data[k], "parley-config %s", k)
	}
	for _, k := range []string{"ROUTER_SCRUBBER_URL", "ROUTER_CACHE_URL", "ROUTER_AUDIT_URL"} {
		require.True(t, strings.HasPrefix(config.Data[k], "https://"), "%s=%s must be https:// under mutual TLS", k, config.Data[k])
	}

	checkCertificate := func(c *certificate, name string) {
		require.Equal(t, []string{"spiffe://" + trustDomain + "/" + name}, c.Spec.URIs, "Certificate %s: URI SANs", c.Metadata.Name)
		require.False(t, c.Spec.IsCA, "Certificate %s", c.Metadata.Name)
		for _, u := range []string{"server auth", "client auth"} {
			require.Contains(t, c.Spec.Usages, u, "Certificate %s: usages", c.Metadata.Name)
		}
		require.Equal(t, "Issuer", c.Spec.IssuerRef.Kind, "Certificate %s: issuerRef", c.Metadata.Name)
		iss, ok := r.issuers[c.Spec.IssuerRef.Name]
		require.True(t, ok, "Certificate %s: Issuer %s is not rendered", c.Metadata.Name, c.Spec.IssuerRef.Name)
		require.NotNil(t, iss.Spec.CA, "Certificate %s: Issuer %s must be a CA issuer (never self-signed leaves)", c.Metadata.Name, iss.Metadata.Name)
		ca := certificateFor(r, iss.Spec.CA.SecretName)
		require.NotNil(t, ca, "Issuer %s: no Certificate writes its CA Secret %s", iss.Metadata.Name, iss.Spec.CA.SecretName)
		require.True(t, ca.Spec.IsCA, "Certificate %s must be a CA", ca.Metadata.Name)
	}

	// Every Deployment of a service, worker pools included (their pods are provider-worker).
	seen := map[string]bool{}
	for _, d := range r.deployments {
		name := d.Spec.Template.Labels["app.kubernetes.io/name"]
		if _, ok := serviceSpecs()[name]; !ok {
			continue
		}
		seen[name] = true
		c := d.Spec.Template.Spec.Containers[0]
		var mount *corev1.VolumeMount
		for i := range c.VolumeMounts {
			if c.VolumeMounts[i].MountPath == tlsDir {
				mount = &c.VolumeMounts[i]
			}
		}
		require.NotNil(t, mount, "%s: nothing mounted at %s", name, tlsDir)
		require.True(t, mount.ReadOnly, "%s: the TLS mount must be read-only", name)
		require.Empty(t, mount.SubPath, "%s: a subPath mount never sees renewals", name)
		vol := volume(d.Spec.Template.Spec, mount.Name)
		require.NotNil(t, vol, "%s: volume %s", name, mount.Name)
		require.NotNil(t, vol.Secret, "%s: volume %s must be a Secret", name, mount.Name)
		cert := certificateFor(r, vol.Secret.SecretName)
		require.NotNil(t, cert, "%s: no Certificate writes Secret %s", name, vol.Secret.SecretName)
		checkCertificate(cert, name)

		wantScheme := corev1.URISchemeHTTPS
		if name == "router" {
			wantScheme = corev1.URISchemeHTTP // the public edge: no TLS on its ports
		}
		for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
			scheme := p.HTTPGet.Scheme
			if scheme == "" {
				scheme = corev1.URISchemeHTTP
			}
			require.Equal(t, wantScheme, scheme, "%s: probe scheme", name)
		}
	}

	for name := range serviceSpecs() {
		require.True(t, seen[name], "no Deployment runs %s", name)
	}

	admin := certificateFor(r, "parley-tls-admin")
	require.NotNil(t, admin, "no Certificate for operators (Secret parley-tls-admin)")
	checkCertificate(admin, "admin")
}
