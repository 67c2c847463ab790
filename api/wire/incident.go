package wire

import "time"

// QuarantineRequest is the body of POST /v1/quarantine: a digest or a key
// (name or id), and why.
type QuarantineRequest struct {
	Digest string `json:"digest,omitempty"`
	Key    string `json:"key,omitempty"`
	Reason string `json:"reason"`
}

// LiftRequest is the body of POST /v1/quarantine/{id}/lift.
type LiftRequest struct {
	Reason string `json:"reason"`
}

// Quarantine is a quarantine, in force or lifted.
type Quarantine struct {
	ID string `json:"id"`
	// Kind is "digest" or "key"; Subject the digest or the key id.
	Kind       string     `json:"kind"`
	Subject    string     `json:"subject"`
	KeyName    string     `json:"key_name,omitempty"`
	Reason     string     `json:"reason"`
	Actor      string     `json:"actor"`
	CreatedAt  time.Time  `json:"created_at"`
	LiftedAt   *time.Time `json:"lifted_at,omitempty"`
	LiftedBy   string     `json:"lifted_by,omitempty"`
	LiftReason string     `json:"lift_reason,omitempty"`
	// LogIndex is the event's index in the audit log, on add and lift.
	LogIndex *uint64 `json:"log_index,omitempty"`
}

// QuarantinesResponse is one page of GET /v1/quarantine, oldest first.
type QuarantinesResponse struct {
	Quarantines []Quarantine `json:"quarantines"`
	NextCursor  string       `json:"next_cursor,omitempty"`
}

// Deployment is where a digest was admitted, with its latest re-validation.
type Deployment struct {
	Admission
	Repository string `json:"repository,omitempty"`
	// Compliant, Reason and CheckedAt are the latest re-validation; absent
	// until one ran.
	Compliant *bool      `json:"compliant,omitempty"`
	Reason    string     `json:"reason,omitempty"`
	CheckedAt *time.Time `json:"checked_at,omitempty"`
}

// DeploymentsResponse answers GET /v1/deployments.
type DeploymentsResponse struct {
	Deployments []Deployment `json:"deployments"`
	// Truncated is true when more matched than the answer holds: narrow it.
	Truncated bool `json:"truncated"`
}

// RevalidationResponse answers POST /v1/deployments/revalidate.
type RevalidationResponse struct {
	Started      time.Time `json:"started"`
	Finished     time.Time `json:"finished"`
	Checked      int       `json:"checked"`
	NonCompliant int       `json:"non_compliant"`
	Truncated    bool      `json:"truncated"`
}
