package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"sigs.k8s.io/yaml"

	"github.com/attestd/attestd/service/policy"
	"github.com/attestd/attestd/service/workload"
)

// TestDeployWebhookConfiguration checks what a cluster admin relies on: the
// gate fails closed, answers under its timeout, and never gates its own
// namespace or kube-system (matched by the immutable name label).
func TestDeployWebhookConfiguration(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "kubernetes", "webhook.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	docs := bytes.Split(b, []byte("\n---\n"))
	var v admissionregistrationv1.ValidatingWebhookConfiguration
	if err := yaml.UnmarshalStrict(docs[0], &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Webhooks) != 1 {
		t.Fatalf("%d validating webhooks", len(v.Webhooks))
	}
	w := v.Webhooks[0]
	if w.FailurePolicy == nil || *w.FailurePolicy != admissionregistrationv1.Fail {
		t.Error("failurePolicy is not Fail")
	}
	if w.TimeoutSeconds == nil || *w.TimeoutSeconds <= 8 {
		t.Error("timeoutSeconds must exceed attestd's default admission deadline (8s)")
	}
	if w.ClientConfig.Service == nil || *w.ClientConfig.Service.Path != "/v1/admission" {
		t.Error("webhook path")
	}
	excluded := false
	for _, e := range w.NamespaceSelector.MatchExpressions {
		if e.Key == "kubernetes.io/metadata.name" && e.Operator == "NotIn" && slices.Contains(e.Values, "kube-system") && slices.Contains(e.Values, "attestd") {
			excluded = true
		}
	}
	if !excluded {
		t.Error("kube-system and the attestd namespace are not excluded by kubernetes.io/metadata.name")
	}
	checkRules(t, "validating", w.Rules)
	var m admissionregistrationv1.MutatingWebhookConfiguration
	if err := yaml.UnmarshalStrict(docs[1], &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Webhooks) != 1 || *m.Webhooks[0].ClientConfig.Service.Path != "/v1/admission/mutate" || *m.Webhooks[0].FailurePolicy != admissionregistrationv1.Fail {
		t.Fatal("the mutating webhook (part of the default deploy): path or failure policy")
	}
	checkRules(t, "mutating", m.Webhooks[0].Rules)
	ex, err := os.ReadFile(filepath.Join("..", "..", "deploy", "kubernetes", "policy-example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := policy.Parse(ex); err != nil {
		t.Errorf("the example policy does not load: %v", err)
	}
}

// checkRules: a webhook's rules cover every kind attestd checks and
// nothing else: each (group, resource) a rule names is a kind attestd
// reads, so no request reaches it only to be denied as an unknown kind.
func checkRules(t *testing.T, which string, rules []admissionregistrationv1.RuleWithOperations) {
	t.Helper()
	kinds := map[string]string{ // group/resource → kind
		"/pods": "Pod", "/pods/ephemeralcontainers": "Pod",
		"apps/deployments": "Deployment", "apps/replicasets": "ReplicaSet", "apps/statefulsets": "StatefulSet", "apps/daemonsets": "DaemonSet",
		"batch/jobs": "Job", "batch/cronjobs": "CronJob",
	}
	covered := map[string]bool{}
	for _, r := range rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				k, ok := kinds[g+"/"+res]
				if !ok || !workload.Checked(g, k) {
					t.Errorf("%s webhook covers %s/%s, a kind attestd does not check", which, g, res)
					continue
				}
				covered[g+"/"+res] = true
			}
		}
	}
	for gr := range kinds {
		if !covered[gr] {
			t.Errorf("%s webhook does not cover %s", which, gr)
		}
	}
}
