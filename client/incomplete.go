package client

import "errors"

// ErrProofUnavailable: the consistency check needed a proof from the log and
// the log did not give one (unreachable, failing, or it timed out). Nothing
// was proved wrong: verifying again later may pass. Wrapped together with
// ErrConsistency.
var ErrProofUnavailable = errors.New("the log did not give a consistency proof")

// Incomplete reports whether the verification could not complete, rather
// than failed: some check failed, and every failed check failed only because
// the log did not give a consistency proof (ErrProofUnavailable). A report
// with any other failure is a refusal, whatever else could not be checked.
func (r *Report) Incomplete() bool {
	failed := false
	for _, c := range r.Results {
		if c.Status != Fail {
			continue
		}
		if !errors.Is(c.err, ErrProofUnavailable) {
			return false
		}
		failed = true
	}
	return failed
}
