package attest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	cdx "github.com/CycloneDX/cyclonedx-go"
	slsa1 "github.com/in-toto/attestation/go/predicates/provenance/v1"
	slsa02 "github.com/in-toto/in-toto-golang/in_toto/slsa_provenance/v0.2"
	"github.com/openvex/go-vex/pkg/vex"
	cattest "github.com/sigstore/cosign/v2/pkg/cosign/attestation"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdxlib"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
)

// Predicate types attestd checks for shape. Any other absolute URI is
// accepted with a JSON-object predicate.
const (
	PredicateSLSAProvenanceV1  = "https://slsa.dev/provenance/v1"
	PredicateSLSAProvenanceV02 = "https://slsa.dev/provenance/v0.2"
	PredicateSPDX              = "https://spdx.dev/Document"
	PredicateCycloneDX         = "https://cyclonedx.org/bom"
	PredicateCosignVuln        = "https://cosign.sigstore.dev/attestation/vuln/v1"
	PredicateOpenVEX           = "https://openvex.dev/ns"
)

// ErrPredicate means a predicate does not match its declared type.
var ErrPredicate = fmt.Errorf("%w: predicate does not match its type", ErrInvalid)

var validators = map[string]func([]byte) error{
	PredicateSLSAProvenanceV1:  validateSLSA1,
	PredicateSLSAProvenanceV02: validateSLSA02,
	PredicateSPDX:              validateSPDX,
	PredicateCycloneDX:         validateCycloneDX,
	PredicateCosignVuln:        validateVuln,
	PredicateOpenVEX:           validateOpenVEX,
	PredicateVSA:               validateVSA,
}

// ValidatePredicate checks that predicate (JSON) has the shape its type
// declares. The type must be an absolute URI; the predicate a JSON object.
func ValidatePredicate(predicateType string, predicate []byte) error {
	u, err := url.Parse(predicateType)
	if err != nil || !u.IsAbs() || u.Host == "" || len(predicateType) > 1024 {
		return fmt.Errorf("%w: predicate type %q is not an absolute URI", ErrInvalid, predicateType)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(predicate, &obj); err != nil {
		return fmt.Errorf("%w: the predicate is not a JSON object: %w", ErrPredicate, err)
	}
	// Duplicate keys and the like mean two parsers may read two different
	// predicates from the same bytes: refuse them.
	if err := protojson.Unmarshal(predicate, &structpb.Struct{}); err != nil {
		return fmt.Errorf("%w: the predicate is ambiguous JSON: %w", ErrPredicate, err)
	}
	v, ok := validators[predicateType]
	if !ok && strings.HasPrefix(predicateType, PredicateOpenVEX) {
		v, ok = validateOpenVEX, true // versioned OpenVEX contexts
	}
	if !ok {
		return nil
	}
	if err := v(predicate); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrPredicate, predicateType, err)
	}
	return nil
}

func validateSLSA1(b []byte) error {
	var p slsa1.Provenance
	if err := protojson.Unmarshal(b, &p); err != nil {
		return err
	}
	return p.Validate()
}

func strictDecode(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func validateSLSA02(b []byte) error {
	var p slsa02.ProvenancePredicate
	if err := strictDecode(b, &p); err != nil {
		return err
	}
	if p.Builder.ID == "" {
		return errors.New("builder.id is required")
	}
	if p.BuildType == "" {
		return errors.New("buildType is required")
	}
	return nil
}

func validateSPDX(b []byte) error {
	var head struct {
		SPDXVersion string `json:"spdxVersion"`
		SPDXID      string `json:"SPDXID"`
		Name        string `json:"name"`
		Namespace   string `json:"documentNamespace"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return err
	}
	if head.SPDXVersion != "SPDX-2.3" && head.SPDXVersion != "SPDX-2.2" {
		return fmt.Errorf("spdxVersion %q: want SPDX-2.3 (or SPDX-2.2)", head.SPDXVersion)
	}
	if head.SPDXID != "SPDXRef-DOCUMENT" || head.Name == "" || head.Namespace == "" {
		return errors.New("SPDXID SPDXRef-DOCUMENT, name and documentNamespace are required")
	}
	doc, err := spdxjson.Read(bytes.NewReader(b))
	if err != nil {
		return err
	}
	if doc.CreationInfo == nil || len(doc.CreationInfo.Creators) == 0 {
		return errors.New("creationInfo with at least one creator is required")
	}
	return spdxlib.ValidateDocument(doc)
}

func validateCycloneDX(b []byte) error {
	var bom cdx.BOM
	if err := cdx.NewBOMDecoder(bytes.NewReader(b), cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
		return err
	}
	if bom.BOMFormat != cdx.BOMFormat {
		return fmt.Errorf("bomFormat %q: want CycloneDX", bom.BOMFormat)
	}
	if bom.SpecVersion == 0 {
		return errors.New("specVersion is required")
	}
	return nil
}

func validateVuln(b []byte) error {
	var p cattest.CosignVulnPredicate
	if err := strictDecode(b, &p); err != nil {
		return err
	}
	if p.Scanner.URI == "" {
		return errors.New("scanner.uri is required")
	}
	if p.Metadata.ScanFinishedOn.IsZero() {
		return errors.New("metadata.scanFinishedOn is required")
	}
	return nil
}

func validateOpenVEX(b []byte) error {
	doc, err := vex.Parse(b)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(doc.Context, PredicateOpenVEX) {
		return fmt.Errorf("@context %q: want %s/…", doc.Context, PredicateOpenVEX)
	}
	if doc.ID == "" || doc.Author == "" {
		return errors.New("@id and author are required")
	}
	for i := range doc.Statements {
		if err := doc.Statements[i].Validate(); err != nil {
			return fmt.Errorf("statement %d: %w", i, err)
		}
	}
	return nil
}
