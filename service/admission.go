package service

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Admission answers Kubernetes admission reviews: every image of a Pod or
// workload (containers, init and ephemeral containers) is put to the gate,
// within a deadline shorter than the webhook's timeout, so that slowness is
// an explicit deny and never a timeout.
type Admission struct {
	gate     *Gate
	deadline time.Duration
}

// NewAdmission returns the admission service.
func NewAdmission(g *Gate, deadline time.Duration) *Admission {
	return &Admission{gate: g, deadline: deadline}
}

// maxAdmissionImages caps the images of one object.
const maxAdmissionImages = 64

type imageRef struct {
	path  string // JSON pointer of the image field
	image string
}

// Review decides on one AdmissionReview (admission.k8s.io/v1) and returns
// the review with its response. With mutate, allowed images are rewritten to
// the digests that were verified (a JSONPatch). A body that does not parse
// is an error (400); everything else is an answer.
func (a *Admission) Review(ctx context.Context, p Principal, body []byte, mutate bool) ([]byte, error) {
	if err := Authorize(p, ActionVerify); err != nil {
		return nil, err
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
		return nil, fmt.Errorf("%w: not an admission.k8s.io/v1 AdmissionReview", ErrInvalid)
	}
	req := review.Request
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	review.Response, review.Request = resp, nil
	deny := func(msg string) ([]byte, error) {
		resp.Allowed = false
		resp.Result = &metav1.Status{Status: metav1.StatusFailure, Code: 403, Reason: metav1.StatusReasonForbidden, Message: msg}
		resp.Patch, resp.PatchType = nil, nil
		return json.Marshal(review)
	}
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return json.Marshal(review)
	}
	images, err := podImages(req.Kind.Kind, req.Object.Raw)
	if err != nil {
		return deny("attestd: " + err.Error())
	}
	if len(images) > maxAdmissionImages {
		return deny(fmt.Sprintf("attestd: %d images, more than %d", len(images), maxAdmissionImages))
	}
	ctx, cancel := context.WithTimeout(ctx, a.deadline)
	defer cancel()
	type result struct {
		d   Decision
		err error
	}
	results := make(map[string]result)
	for _, im := range images {
		if _, done := results[im.image]; done {
			continue
		}
		d, err := a.gate.Verify(ctx, p, VerifyRequest{Image: im.image, Namespace: req.Namespace})
		results[im.image] = result{d, err}
	}
	var denied []string
	var patch []map[string]string
	for _, im := range images {
		r := results[im.image]
		switch {
		case r.err != nil:
			denied = append(denied, fmt.Sprintf("%s (%s): %v", im.image, im.path, r.err))
		case !r.d.Allow:
			denied = append(denied, fmt.Sprintf("%s: %s [decision %s]", im.image, r.d.Reason, r.d.ID))
		default:
			resp.Warnings = append(resp.Warnings, prefix(im.image, r.d.Warnings)...)
			if mutate && r.d.Image != "" && r.d.Image != im.image {
				patch = append(patch, map[string]string{"op": "replace", "path": im.path, "value": r.d.Image})
			}
		}
	}
	if ctx.Err() != nil {
		return deny(fmt.Sprintf("attestd: no decision within %s; denied", a.deadline))
	}
	if len(denied) > 0 {
		return deny("attestd denied " + strings.Join(denied, "; "))
	}
	if len(patch) > 0 {
		b, err := json.Marshal(patch)
		if err != nil {
			return nil, err
		}
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = b, &pt
	}
	return json.Marshal(review)
}

func prefix(image string, ws []string) []string {
	out := make([]string, 0, len(ws))
	for _, w := range ws {
		out = append(out, image+": "+w)
	}
	return out
}

// podImages returns the image fields of a Pod or a workload's pod template.
func podImages(kind string, raw []byte) ([]imageRef, error) {
	var spec *corev1.PodSpec
	var base string
	decode := func(v any) error {
		if err := json.Unmarshal(raw, v); err != nil {
			return fmt.Errorf("cannot read the %s: %w", kind, err)
		}
		return nil
	}
	switch kind {
	case "Pod":
		var o corev1.Pod
		if err := decode(&o); err != nil {
			return nil, err
		}
		spec, base = &o.Spec, "/spec"
	case "Deployment":
		var o appsv1.Deployment
		if err := decode(&o); err != nil {
			return nil, err
		}
		spec, base = &o.Spec.Template.Spec, "/spec/template/spec"
	case "ReplicaSet":
		var o appsv1.ReplicaSet
		if err := decode(&o); err != nil {
			return nil, err
		}
		spec, base = &o.Spec.Template.Spec, "/spec/template/spec"
	case "StatefulSet":
		var o appsv1.StatefulSet
		if err := decode(&o); err != nil {
			return nil, err
		}
		spec, base = &o.Spec.Template.Spec, "/spec/template/spec"
	case "DaemonSet":
		var o appsv1.DaemonSet
		if err := decode(&o); err != nil {
			return nil, err
		}
		spec, base = &o.Spec.Template.Spec, "/spec/template/spec"
	case "Job":
		var o batchv1.Job
		if err := decode(&o); err != nil {
			return nil, err
		}
		spec, base = &o.Spec.Template.Spec, "/spec/template/spec"
	case "CronJob":
		var o batchv1.CronJob
		if err := decode(&o); err != nil {
			return nil, err
		}
		spec, base = &o.Spec.JobTemplate.Spec.Template.Spec, "/spec/jobTemplate/spec/template/spec"
	default:
		return nil, nil // not a workload: nothing to check
	}
	var out []imageRef
	for i, c := range spec.InitContainers {
		out = append(out, imageRef{fmt.Sprintf("%s/initContainers/%d/image", base, i), c.Image})
	}
	for i, c := range spec.Containers {
		out = append(out, imageRef{fmt.Sprintf("%s/containers/%d/image", base, i), c.Image})
	}
	for i, c := range spec.EphemeralContainers {
		out = append(out, imageRef{fmt.Sprintf("%s/ephemeralContainers/%d/image", base, i), c.Image})
	}
	return out, nil
}
