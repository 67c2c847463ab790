// Package helm tests the chart in deploy/helm/attestd: it is rendered with
// the Helm SDK (as `helm template` and `helm install` would) for the
// single-node and replicated values, every object is decoded strictly into
// its Kubernetes type, and the security settings are asserted.
package helm

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/attestd/attestd/internal/app"
)

// objects is one render, decoded: by kind, then name.
type objects map[string]map[string]any

// The CRDs the chart may render, typed here with only the fields it sets,
// so that a field the chart adds that these do not know fails the test.
type (
	issuer struct {
		metav1.TypeMeta   `json:",inline"`
		metav1.ObjectMeta `json:"metadata"`
		Spec              struct {
			SelfSigned *struct{} `json:"selfSigned"`
		} `json:"spec"`
	}
	certificate struct {
		metav1.TypeMeta   `json:",inline"`
		metav1.ObjectMeta `json:"metadata"`
		Spec              struct {
			SecretName string            `json:"secretName"`
			DNSNames   []string          `json:"dnsNames"`
			IssuerRef  map[string]string `json:"issuerRef"`
			PrivateKey struct {
				Algorithm      string `json:"algorithm"`
				Size           int    `json:"size"`
				RotationPolicy string `json:"rotationPolicy"`
			} `json:"privateKey"`
		} `json:"spec"`
	}
	serviceMonitor struct {
		metav1.TypeMeta   `json:",inline"`
		metav1.ObjectMeta `json:"metadata"`
		Spec              struct {
			Selector  metav1.LabelSelector `json:"selector"`
			Endpoints []struct {
				Port, Path, Interval string
			} `json:"endpoints"`
		} `json:"spec"`
	}
)

func typed(kind string) any {
	switch kind {
	case "Deployment":
		return &appsv1.Deployment{}
	case "Service":
		return &corev1.Service{}
	case "ServiceAccount":
		return &corev1.ServiceAccount{}
	case "ConfigMap":
		return &corev1.ConfigMap{}
	case "Secret":
		return &corev1.Secret{}
	case "PersistentVolumeClaim":
		return &corev1.PersistentVolumeClaim{}
	case "PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	case "NetworkPolicy":
		return &networkingv1.NetworkPolicy{}
	case "ValidatingWebhookConfiguration":
		return &admissionv1.ValidatingWebhookConfiguration{}
	case "MutatingWebhookConfiguration":
		return &admissionv1.MutatingWebhookConfiguration{}
	case "Issuer":
		return &issuer{}
	case "Certificate":
		return &certificate{}
	case "ServiceMonitor":
		return &serviceMonitor{}
	}
	return nil
}

// render renders the chart with vals (over values.yaml) in namespace
// attestd, as release attestd.
func render(t *testing.T, vals map[string]any) (objects, error) {
	t.Helper()
	ch, err := loader.Load("attestd")
	if err != nil {
		t.Fatal(err)
	}
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{Name: "attestd", Namespace: "attestd", IsInstall: true, Revision: 1}, chartutil.DefaultCapabilities)
	if err != nil {
		return nil, err
	}
	files, err := engine.Render(ch, rv)
	if err != nil {
		return nil, err
	}
	if os.Getenv("ATTESTD_HELM_DUMP") != "" { // what `helm template` would print
		for name, body := range files {
			t.Logf("# %s\n%s", name, body)
		}
	}
	out := objects{}
	for name, body := range files {
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		for _, doc := range strings.Split(body, "\n---") {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				t.Fatalf("%s: %v\n%s", name, err, doc)
			}
			obj := typed(tm.Kind)
			if obj == nil {
				t.Fatalf("%s: kind %q has no type in this test", name, tm.Kind)
			}
			if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
				t.Fatalf("%s: %s does not decode strictly: %v\n%s", name, tm.Kind, err, doc)
			}
			var meta struct {
				Metadata metav1.ObjectMeta `json:"metadata"`
			}
			_ = yaml.Unmarshal([]byte(doc), &meta)
			if out[tm.Kind] == nil {
				out[tm.Kind] = map[string]any{}
			}
			out[tm.Kind][meta.Metadata.Name] = obj
		}
	}
	return out, nil
}

func mustRender(t *testing.T, vals map[string]any) objects {
	t.Helper()
	o, err := render(t, vals)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return o
}

// replicated are values for three replicas on external engines, with
// cert-manager, OIDC, policies, egress and a ServiceMonitor.
func replicated() map[string]any {
	return map[string]any{
		"replicaCount": 3,
		"image":        map[string]any{"repository": "registry.example.com/attestd/attestd", "digest": "sha256:" + strings.Repeat("ab", 32)},
		"database":     map[string]any{"existingSecret": "attestd-db"},
		"registries": []any{
			map[string]any{"host": "registry.example.com", "username": "attestd", "passwordSecret": map[string]any{"name": "registry", "key": "password"}},
			map[string]any{"host": "ghcr.io", "tokenSecret": map[string]any{"name": "ghcr", "key": "token"}, "tokenRealms": []any{"ghcr.io"}},
		},
		"keys":         []any{map[string]any{"name": "release", "uri": "awskms:///alias/attestd-release"}},
		"kmsEnvSecret": "attestd-kms",
		"auditLog":     map[string]any{"databaseSecret": "attestd-log-db", "keySecret": "attestd-log-key"},
		"oidc": map[string]any{
			"issuers": []any{map[string]any{"name": "github", "url": "https://token.actions.githubusercontent.com", "audience": "attestd", "kind": "github-actions"}},
			"rules": []any{map[string]any{"issuer": "github", "when": `claims.repository == "acme/app"`, "roles": []any{"signer"},
				"repositories": []any{"registry.example.com/acme/**"}, "keys": []any{"release"}}},
		},
		"policies":       []any{map[string]any{"configMap": "gate-policies", "files": []any{"production.yaml"}}},
		"webhook":        map[string]any{"certManager": map[string]any{"enabled": true}, "excludeNamespaces": []any{"monitoring"}},
		"networkPolicy":  map[string]any{"apiServerCIDRs": []any{"10.0.0.1/32"}, "egress": map[string]any{"registries": []any{map[string]any{"cidr": "203.0.113.0/24", "ports": []any{443}}}, "database": []any{map[string]any{"cidr": "10.1.0.0/16", "ports": []any{5432, 3306}}}}},
		"serviceMonitor": map[string]any{"enabled": true},
	}
}

// TestChartRenders: both shapes render objects that decode strictly, with
// the security settings, probes, webhooks and the shape's parts.
func TestChartRenders(t *testing.T) {
	for name, tc := range map[string]struct {
		vals       map[string]any
		replicated bool
	}{
		"single node": {vals: nil},
		"replicated":  {vals: replicated(), replicated: true},
	} {
		t.Run(name, func(t *testing.T) {
			o := mustRender(t, tc.vals)
			server, ok := o["Deployment"]["attestd"].(*appsv1.Deployment)
			if !ok {
				t.Fatalf("no attestd Deployment: %v", o)
			}
			deployments := []*appsv1.Deployment{server}
			worker, hasWorker := o["Deployment"]["attestd-worker"].(*appsv1.Deployment)
			if hasWorker {
				deployments = append(deployments, worker)
			}
			if hasWorker != tc.replicated {
				t.Errorf("worker Deployment rendered: %v", hasWorker)
			}
			_, hasPVC := o["PersistentVolumeClaim"]["attestd-data"]
			if hasPVC == tc.replicated {
				t.Errorf("PersistentVolumeClaim rendered: %v", hasPVC)
			}
			want := int32(1)
			if tc.replicated {
				want = 3
			}
			if *server.Spec.Replicas != want {
				t.Errorf("replicas %d, want %d", *server.Spec.Replicas, want)
			}
			for _, d := range deployments {
				restricted(t, d)
			}
			c := server.Spec.Template.Spec.Containers[0]
			if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
				t.Errorf("probes: %+v %+v", c.LivenessProbe, c.ReadinessProbe)
			}
			noSecretValues(t, deployments)
			webhooks(t, o, tc.replicated)
			config(t, o, tc.replicated)

			if pdb, ok := o["PodDisruptionBudget"]["attestd"].(*policyv1.PodDisruptionBudget); !ok || pdb.Spec.Selector.MatchLabels["app.kubernetes.io/component"] != "server" {
				t.Errorf("PodDisruptionBudget: %+v", o["PodDisruptionBudget"])
			}
			np, ok := o["NetworkPolicy"]["attestd"].(*networkingv1.NetworkPolicy)
			if !ok || len(np.Spec.PolicyTypes) != 2 || len(np.Spec.Ingress) == 0 || np.Spec.Ingress[0].Ports[0].Port.IntValue() != 8443 {
				t.Fatalf("NetworkPolicy: %+v", np)
			}
			if tc.replicated {
				if len(np.Spec.Ingress[0].From) != 1 || np.Spec.Ingress[0].From[0].IPBlock.CIDR != "10.0.0.1/32" || len(np.Spec.Egress) != 3 {
					t.Errorf("NetworkPolicy from the values: ingress %+v, egress %+v", np.Spec.Ingress, np.Spec.Egress)
				}
				if _, ok := o["ServiceMonitor"]["attestd"]; !ok {
					t.Error("no ServiceMonitor")
				}
				if !strings.Contains(server.Spec.Template.Spec.Containers[0].Image, "@sha256:") {
					t.Errorf("image %q: not by digest", server.Spec.Template.Spec.Containers[0].Image)
				}
			}
		})
	}
}

// restricted asserts the restricted Pod Security Standard.
func restricted(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	ps := d.Spec.Template.Spec.SecurityContext
	if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot || ps.SeccompProfile == nil || ps.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: pod security context %+v", d.Name, ps)
	}
	if a := d.Spec.Template.Spec.AutomountServiceAccountToken; a == nil || *a {
		t.Errorf("%s: the service account token is mounted", d.Name)
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
			t.Errorf("%s/%s: container security context %+v", d.Name, c.Name, sc)
		}
		if c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() {
			t.Errorf("%s/%s: resources %+v", d.Name, c.Name, c.Resources)
		}
	}
}

// noSecretValues: every credential reaches attestd from a Secret.
func noSecretValues(t *testing.T, ds []*appsv1.Deployment) {
	t.Helper()
	for _, d := range ds {
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, e := range c.Env {
				secretish := strings.Contains(e.Name, "PASSWORD") || strings.Contains(e.Name, "TOKEN") || strings.HasSuffix(e.Name, "DATABASE_URL")
				if secretish && (e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
					t.Errorf("%s/%s: %s is not from a Secret", d.Name, c.Name, e.Name)
				}
			}
		}
	}
}

// webhooks: both configurations fail closed, exclude the release namespace
// and kube-system by name, and trust the serving certificate.
func webhooks(t *testing.T, o objects, certManager bool) {
	t.Helper()
	v, ok := o["ValidatingWebhookConfiguration"]["attestd-gate"].(*admissionv1.ValidatingWebhookConfiguration)
	m, ok2 := o["MutatingWebhookConfiguration"]["attestd-pin"].(*admissionv1.MutatingWebhookConfiguration)
	if !ok || !ok2 || len(v.Webhooks) != 1 || len(m.Webhooks) != 1 {
		t.Fatalf("webhook configurations: %v", o)
	}
	type hook struct {
		fp       *admissionv1.FailurePolicyType
		sel      *metav1.LabelSelector
		cc       admissionv1.WebhookClientConfig
		path     string
		injected string
	}
	hooks := []hook{
		{v.Webhooks[0].FailurePolicy, v.Webhooks[0].NamespaceSelector, v.Webhooks[0].ClientConfig, "/v1/admission", v.Annotations["cert-manager.io/inject-ca-from"]},
		{m.Webhooks[0].FailurePolicy, m.Webhooks[0].NamespaceSelector, m.Webhooks[0].ClientConfig, "/v1/admission/mutate", m.Annotations["cert-manager.io/inject-ca-from"]},
	}
	for _, h := range hooks {
		if h.fp == nil || *h.fp != admissionv1.Fail {
			t.Errorf("%s: failurePolicy %v, want Fail", h.path, h.fp)
		}
		if h.sel == nil || len(h.sel.MatchExpressions) != 1 || h.sel.MatchExpressions[0].Key != "kubernetes.io/metadata.name" || h.sel.MatchExpressions[0].Operator != metav1.LabelSelectorOpNotIn ||
			!slices.Contains(h.sel.MatchExpressions[0].Values, "attestd") || !slices.Contains(h.sel.MatchExpressions[0].Values, "kube-system") {
			t.Errorf("%s: namespace selector %+v", h.path, h.sel)
		}
		if h.cc.Service == nil || *h.cc.Service.Path != h.path || h.cc.Service.Namespace != "attestd" || *h.cc.Service.Port != 443 {
			t.Errorf("%s: client config %+v", h.path, h.cc.Service)
		}
		if certManager {
			if h.injected != "attestd/attestd-serving" || len(h.cc.CABundle) != 0 {
				t.Errorf("%s: with cert-manager: inject-ca-from %q, caBundle %d bytes", h.path, h.injected, len(h.cc.CABundle))
			}
			continue
		}
		// The Helm-generated CA in caBundle verifies the serving certificate
		// for the Service's name.
		sec, ok := o["Secret"]["attestd-tls"].(*corev1.Secret)
		if !ok {
			t.Fatalf("no serving certificate Secret")
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(h.cc.CABundle) {
			t.Fatalf("%s: caBundle is not a PEM certificate", h.path)
		}
		blk, _ := pem.Decode(sec.Data["tls.crt"])
		if blk == nil {
			t.Fatal("tls.crt is not PEM")
		}
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "attestd.attestd.svc"}); err != nil {
			t.Errorf("%s: the serving certificate does not verify with caBundle: %v", h.path, err)
		}
	}
	if certManager {
		if c, ok := o["Certificate"]["attestd-serving"].(*certificate); !ok || c.Spec.SecretName != "attestd-tls" || !slices.Contains(c.Spec.DNSNames, "attestd.attestd.svc") {
			t.Errorf("cert-manager Certificate: %+v", o["Certificate"])
		}
	}
}

// config: the rendered config.yaml is one attestd loads (unknown keys are
// an error there) and validates, in the shape asked for.
func config(t *testing.T, o objects, replicated bool) {
	t.Helper()
	cm, ok := o["ConfigMap"]["attestd"].(*corev1.ConfigMap)
	if !ok {
		t.Fatal("no ConfigMap")
	}
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(cm.Data["config.yaml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := app.Defaults()
	if err := cfg.LoadFile(p); err != nil {
		t.Fatalf("attestd refuses the chart's config: %v\n%s", err, cm.Data["config.yaml"])
	}
	cfg.DataDir = t.TempDir()
	if err := cfg.Validate(); err != nil {
		t.Errorf("the chart's config does not validate: %v\n%s", err, cm.Data["config.yaml"])
	}
	if cfg.EmbeddedRegistry.Enabled == replicated || cfg.TLSListen != ":8443" {
		t.Errorf("embedded registry %v, tls_listen %q", cfg.EmbeddedRegistry.Enabled, cfg.TLSListen)
	}
	if replicated && (len(cfg.Registries) != 2 || cfg.Registries[0].PasswordEnv != "ATTESTD_REGISTRY_0_PASSWORD" || len(cfg.OIDC.Issuers) != 1 ||
		len(cfg.PolicyFiles) != 1 || cfg.PolicyFiles[0] != "/etc/attestd/policies/0/production.yaml") {
		t.Errorf("replicated config: %+v", cfg)
	}
}

// TestChartRefusesWrongValues: the values schema and the chart's checks
// stop an install with a wrong value, naming it.
func TestChartRefusesWrongValues(t *testing.T) {
	for name, tc := range map[string]struct {
		vals map[string]any
		want string
	}{
		"no replicas":                   {map[string]any{"replicaCount": 0}, "replicaCount"},
		"a tag as digest":               {map[string]any{"image": map[string]any{"repository": "r", "digest": "latest"}}, "digest"},
		"an unknown value":              {map[string]any{"replicas": 3}, "replicas"},
		"a webhook timeout over 30":     {map[string]any{"webhook": map[string]any{"timeoutSeconds": 60}}, "timeoutSeconds"},
		"a key that is not a KMS":       {map[string]any{"keys": []any{map[string]any{"name": "k", "uri": "https://kms.example"}}}, "uri"},
		"two registry credentials":      {map[string]any{"registries": []any{map[string]any{"host": "r.example", "passwordSecret": map[string]any{"name": "a", "key": "b"}, "tokenSecret": map[string]any{"name": "a", "key": "b"}}}}, "registries"},
		"a secret as a value":           {map[string]any{"database": map[string]any{"url": "postgres://u:pw@db/attestd"}}, "url"},
		"replicas without PostgreSQL":   {func() map[string]any { v := replicated(); delete(v, "database"); return v }(), "database.existingSecret"},
		"replicas without a shared log": {func() map[string]any { v := replicated(); delete(v, "auditLog"); return v }(), "auditLog"},
		"replicas with the local key":   {func() map[string]any { v := replicated(); delete(v, "keys"); return v }(), "keys"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := render(t, tc.vals)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("rendered, or refused for another reason: %v; want a refusal naming %q", err, tc.want)
			}
		})
	}
}

// TestStrictDecodingBites: the decoding above does refuse a field its type
// does not have (else TestChartRenders would prove nothing).
func TestStrictDecodingBites(t *testing.T) {
	doc := "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replicas: 1\n  replica: 2\n"
	if err := yaml.UnmarshalStrict([]byte(doc), &appsv1.Deployment{}); err == nil {
		t.Error("an unknown field decoded")
	}
}
