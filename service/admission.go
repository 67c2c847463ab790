package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/attestd/attestd/service/workload"
)

// Admission answers Kubernetes admission reviews: every image of a Pod or
// workload (containers, init and ephemeral containers) is put to the gate,
// within a deadline shorter than the webhook's timeout, so that slowness is
// an explicit deny and never a timeout. A malformed object is denied with
// the reason; a kind attestd does not check is denied unless configured
// otherwise. The validating review denies an image by tag unless every
// policy judging it allows tags: the mutating review pins tags to the
// digests it verified, so what is admitted cannot move afterwards.
type Admission struct {
	gate         *Gate
	deadline     time.Duration
	allowUnknown bool
}

// admissionConcurrency bounds the images of one review decided at once.
const admissionConcurrency = 8

// NewAdmission returns the admission service. allowUnknownKinds admits
// objects of kinds attestd does not check (with a warning); by default
// they are denied.
func NewAdmission(g *Gate, deadline time.Duration, allowUnknownKinds bool) *Admission {
	return &Admission{gate: g, deadline: deadline, allowUnknown: allowUnknownKinds}
}

// Review decides on one AdmissionReview (admission.k8s.io/v1) and returns
// the review with its response. With mutate, allowed images are rewritten to
// the digests that were verified (a JSONPatch). A body that does not parse
// is an error (400); everything else is an answer.
func (a *Admission) Review(ctx context.Context, p Principal, body []byte, mutate bool) ([]byte, error) {
	if err := Authorize(p, ActionVerify); err != nil {
		return nil, err
	}
	review, err := workload.Decode(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
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
	images, err := workload.Images(req.Kind.Group, req.Kind.Kind, req.Object.Raw)
	switch {
	case errors.Is(err, workload.ErrUnknownKind) && a.allowUnknown:
		resp.Warnings = append(resp.Warnings, "attestd: "+err.Error()+"; admitted unchecked (admission_unknown_kinds: allow)")
		return json.Marshal(review)
	case errors.Is(err, workload.ErrUnknownKind):
		return deny("attestd: " + err.Error() + "; the default is deny (admission_unknown_kinds)")
	case err != nil:
		return deny("attestd: " + err.Error())
	}
	ctx, cancel := context.WithTimeout(ctx, a.deadline)
	defer cancel()
	type result struct {
		d   Decision
		err error
	}
	// Each distinct image is put to the gate once, concurrently (at most
	// admissionConcurrency at a time), all within the one deadline.
	results := make(map[string]*result)
	var distinct []string
	for _, im := range images {
		if _, done := results[im.Image]; !done {
			results[im.Image] = &result{}
			distinct = append(distinct, im.Image)
		}
	}
	wname := workload.Name(req.Name, req.Object.Raw)
	var eg errgroup.Group
	eg.SetLimit(admissionConcurrency)
	for _, image := range distinct {
		r := results[image]
		eg.Go(func() error {
			defer func() {
				// The gate turns a panic while deciding into a deny; one
				// anywhere else is a deny here, never a crash.
				if recover() != nil {
					r.d, r.err = Decision{}, errors.New("internal error while deciding")
				}
			}()
			r.d, r.err = a.gate.Verify(ctx, p, VerifyRequest{Image: image, Namespace: req.Namespace, RequireDigest: !mutate,
				WorkloadKind: req.Kind.Kind, WorkloadName: wname})
			return nil
		})
	}
	_ = eg.Wait()
	var denied []string
	var patch []map[string]string
	for _, im := range images {
		r := results[im.Image]
		switch {
		case r.err != nil:
			denied = append(denied, fmt.Sprintf("%s (%s): %v", im.Image, im.Path, r.err))
		case !r.d.Allow:
			denied = append(denied, fmt.Sprintf("%s: %s [decision %s]", im.Image, r.d.Reason, r.d.ID))
		default:
			resp.Warnings = append(resp.Warnings, prefix(im.Image, r.d.Warnings)...)
			if mutate && r.d.Image != "" && r.d.Image != im.Image {
				patch = append(patch, map[string]string{"op": "replace", "path": im.Path, "value": r.d.Image})
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
