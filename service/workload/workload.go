// Package workload reads Kubernetes admission reviews: it decodes an
// AdmissionReview (admission.k8s.io/v1) and finds the image of every
// container of a Pod or of a workload's pod template, init and ephemeral
// containers included.
//
// It is pure: it MUST NOT fetch anything. Everything it reads comes from the
// API server's request and is hostile until checked: an object it cannot
// read, a Pod with no containers, or an empty image is an error (the gate
// denies it), never an object with nothing to check.
package workload

import (
	"encoding/json"
	"errors"
	"fmt"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
)

// Errors of admission decoding.
var (
	// ErrMalformed means the review or its object cannot be read, or the
	// object is not a valid Pod or workload (no spec, no containers, an
	// empty image).
	ErrMalformed = errors.New("malformed admission request")
	// ErrUnknownKind means the object is of a kind attestd does not check.
	ErrUnknownKind = errors.New("kind not checked by attestd")
)

// MaxImages caps the images of one object.
const MaxImages = 64

// Image is one image field of an object.
type Image struct {
	// Path is the JSON pointer of the image field, for a JSONPatch.
	Path string
	// Image is the image reference as written.
	Image string
}

// Decode reads an AdmissionReview. The review must carry a request with a
// uid; its response is left for the caller.
func Decode(body []byte) (*admissionv1.AdmissionReview, error) {
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		return nil, fmt.Errorf("%w: not an admission.k8s.io/v1 AdmissionReview: %w", ErrMalformed, err)
	}
	if review.APIVersion != "" && review.APIVersion != "admission.k8s.io/v1" {
		return nil, fmt.Errorf("%w: apiVersion %q, want admission.k8s.io/v1", ErrMalformed, review.APIVersion)
	}
	if review.Request == nil || review.Request.UID == "" {
		return nil, fmt.Errorf("%w: an AdmissionReview needs a request with a uid", ErrMalformed)
	}
	return &review, nil
}

// kind is a group and kind attestd checks, and where its pod spec sits.
type kind struct{ group, kind string }

var specPaths = map[kind]string{
	{"", "Pod"}:             "/spec",
	{"apps", "Deployment"}:  "/spec/template/spec",
	{"apps", "ReplicaSet"}:  "/spec/template/spec",
	{"apps", "StatefulSet"}: "/spec/template/spec",
	{"apps", "DaemonSet"}:   "/spec/template/spec",
	{"batch", "Job"}:        "/spec/template/spec",
	{"batch", "CronJob"}:    "/spec/jobTemplate/spec/template/spec",
}

// Checked reports whether attestd checks objects of group and kind.
func Checked(group, k string) bool {
	_, ok := specPaths[kind{group, k}]
	return ok
}

// Images returns the image fields of an object of group and kind. An
// unknown kind is ErrUnknownKind; an object that does not decode, has no
// pod spec, no containers, or an empty image is ErrMalformed.
func Images(group, k string, raw []byte) ([]Image, error) {
	base, ok := specPaths[kind{group, k}]
	if !ok {
		name := k
		if group != "" {
			name = group + "/" + k
		}
		return nil, fmt.Errorf("%w: %s", ErrUnknownKind, name)
	}
	if len(raw) == 0 {
		return nil, fmt.Errorf("%w: the request has no object", ErrMalformed)
	}
	spec, err := podSpec(k, raw)
	if err != nil {
		return nil, err
	}
	if len(spec.Containers) == 0 {
		return nil, fmt.Errorf("%w: the %s has no pod spec with containers", ErrMalformed, k)
	}
	var out []Image
	add := func(field string, cs []string) {
		for i, im := range cs {
			out = append(out, Image{Path: fmt.Sprintf("%s/%s/%d/image", base, field, i), Image: im})
		}
	}
	add("initContainers", containerImages(spec.InitContainers))
	add("containers", containerImages(spec.Containers))
	eph := make([]string, 0, len(spec.EphemeralContainers))
	for _, c := range spec.EphemeralContainers {
		eph = append(eph, c.Image)
	}
	add("ephemeralContainers", eph)
	if len(out) > MaxImages {
		return nil, fmt.Errorf("%w: %d images, more than %d", ErrMalformed, len(out), MaxImages)
	}
	for _, im := range out {
		if im.Image == "" {
			return nil, fmt.Errorf("%w: %s is empty", ErrMalformed, im.Path)
		}
	}
	return out, nil
}

func containerImages(cs []corev1.Container) []string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.Image)
	}
	return out
}

// podSpec decodes the object and returns its pod spec.
func podSpec(k string, raw []byte) (*corev1.PodSpec, error) {
	decode := func(v any) error {
		if err := json.Unmarshal(raw, v); err != nil {
			return fmt.Errorf("%w: cannot read the %s: %w", ErrMalformed, k, err)
		}
		return nil
	}
	switch k {
	case "Pod":
		var o corev1.Pod
		if err := decode(&o); err != nil {
			return nil, err
		}
		return &o.Spec, nil
	case "Deployment":
		var o appsv1.Deployment
		if err := decode(&o); err != nil {
			return nil, err
		}
		return &o.Spec.Template.Spec, nil
	case "ReplicaSet":
		var o appsv1.ReplicaSet
		if err := decode(&o); err != nil {
			return nil, err
		}
		return &o.Spec.Template.Spec, nil
	case "StatefulSet":
		var o appsv1.StatefulSet
		if err := decode(&o); err != nil {
			return nil, err
		}
		return &o.Spec.Template.Spec, nil
	case "DaemonSet":
		var o appsv1.DaemonSet
		if err := decode(&o); err != nil {
			return nil, err
		}
		return &o.Spec.Template.Spec, nil
	case "Job":
		var o batchv1.Job
		if err := decode(&o); err != nil {
			return nil, err
		}
		return &o.Spec.Template.Spec, nil
	case "CronJob":
		var o batchv1.CronJob
		if err := decode(&o); err != nil {
			return nil, err
		}
		return &o.Spec.JobTemplate.Spec.Template.Spec, nil
	}
	return nil, fmt.Errorf("%w: %s", ErrUnknownKind, k)
}

// Name is the name of the object under review, for the record: the
// request's name, or else the object's generateName prefix (a Pod a
// ReplicaSet creates has no name yet).
func Name(reqName string, raw []byte) string {
	if reqName != "" {
		return reqName
	}
	var o struct {
		Metadata struct {
			Name         string `json:"name"`
			GenerateName string `json:"generateName"`
		} `json:"metadata"`
	}
	if json.Unmarshal(raw, &o) != nil {
		return ""
	}
	if o.Metadata.Name != "" {
		return o.Metadata.Name
	}
	return o.Metadata.GenerateName
}
