package admission

import (
	"fmt"

	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/coproc/evidence"
)

// parseIdentity parses an enrolled TPM identity; "" is none.
func parseIdentity(s string) (*evidence.Identity, error) {
	if s == "" {
		return nil, nil
	}
	return evidence.ParseIdentityString(s)
}

// checkEvidence applies the enrolment's promise to a statement whose
// signature verified. A key enrolled with a TPM identity admits only
// statements whose TPM evidence verifies under it (coproc/evidence.Verify:
// AK signature, TPM-generated NV certifications of the enrolled indexes,
// certified root and counter equal to the statement's, extraData binding
// this statement, clock safe); the refusal names the part that failed. A
// key enrolled without one is a software key to the log: its statements
// are admitted as signed, and customers' trust files decide what they are
// worth.
func checkEvidence(ident *evidence.Identity, st *coproc.Statement) error {
	if ident == nil {
		return nil
	}
	if _, err := evidence.Verify(st, ident); err != nil {
		return fmt.Errorf("%w: %w", ErrBadEvidence, err)
	}
	return nil
}
