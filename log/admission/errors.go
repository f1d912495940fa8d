package admission

import (
	"context"
	"errors"
	"net/http"

	"github.com/vmledger/vmledger/log/engine"
)

// Refusals. Every error the service returns wraps one of these (or an
// engine sentinel); [status] maps them to an HTTP status and the
// machine-readable reason of the JSON error body.
var (
	// ErrMalformed: the body is not a canonical DSSE envelope (or not the
	// JSON the endpoint takes).
	ErrMalformed = errors.New("malformed")
	// ErrBadStatement: the payload is not a well-formed vm-config statement.
	ErrBadStatement = errors.New("bad statement")
	// ErrUnknownKey: the co-processor key is not enrolled.
	ErrUnknownKey = errors.New("co-processor key not enrolled")
	// ErrRevokedKey: the co-processor key was revoked (revocation is final).
	ErrRevokedKey = errors.New("co-processor key revoked")
	// ErrBadSignature: the DSSE signature does not verify under the enrolled key.
	ErrBadSignature = errors.New("signature does not verify")
	// ErrBadEvidence: the key was enrolled with a TPM identity and the
	// statement's TPM evidence is missing or does not verify under it.
	ErrBadEvidence = errors.New("TPM evidence refused")
	// ErrReplayedCounter: the counter is not above the last one admitted
	// (or being admitted) for the key.
	ErrReplayedCounter = errors.New("counter not above the key's last admitted counter")
	// ErrStaleFreshness: the anchor is a checkpoint of this log, but it was
	// not the published checkpoint at any time within the freshness window.
	ErrStaleFreshness = errors.New("freshness anchor is stale")
	// ErrUnknownAnchor: the anchor is not a checkpoint this log signed and
	// published (other origin, unknown size, other root).
	ErrUnknownAnchor = errors.New("freshness anchor is not a checkpoint this log published")
	// ErrEmptyAnchor: the anchor is the empty tree (size 0), which anyone
	// can write in advance: it proves nothing about when the statement was
	// made. Anchor to a published checkpoint of size 1 or more (a log has
	// one once it has enrolled a key).
	ErrEmptyAnchor = errors.New("freshness anchor is the empty tree")
	// ErrTooLarge: the body exceeds the endpoint's limit.
	ErrTooLarge = errors.New("request too large")
	// ErrOverloaded: too many admissions in flight; retry later.
	ErrOverloaded = errors.New("too many admissions in flight")
	// ErrUnauthorized: a missing or wrong admin bearer token.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrBadRequest: a malformed query or path parameter.
	ErrBadRequest = errors.New("bad request")
	// ErrBadKey: an enrolment request with a public key that is not an ECDSA
	// P-256 or Ed25519 PEM public key, or a bad name.
	ErrBadKey = errors.New("bad public key")
	// ErrSharedState: the admission state shared by the log's front-ends
	// (Config.Claims) could not be read or written; nothing was admitted,
	// retry later.
	ErrSharedState = errors.New("shared admission state unavailable")
)

// retryAfter is the Retry-After value (seconds) sent with 429 and 503.
const retryAfter = "1"

// status is the one place where errors become HTTP statuses and reasons.
func status(err error) (code int, reason string) {
	switch {
	case errors.Is(err, ErrMalformed):
		return http.StatusBadRequest, "malformed"
	case errors.Is(err, ErrBadStatement):
		return http.StatusBadRequest, "bad-statement"
	case errors.Is(err, ErrBadRequest):
		return http.StatusBadRequest, "bad-request"
	case errors.Is(err, ErrBadKey):
		return http.StatusBadRequest, "bad-key"
	case errors.Is(err, ErrUnauthorized):
		return http.StatusUnauthorized, "unauthorized"
	case errors.Is(err, ErrUnknownKey):
		return http.StatusForbidden, "unknown-key"
	case errors.Is(err, ErrRevokedKey):
		return http.StatusForbidden, "revoked-key"
	case errors.Is(err, ErrBadSignature):
		return http.StatusForbidden, "bad-signature"
	case errors.Is(err, ErrBadEvidence):
		return http.StatusForbidden, "bad-evidence"
	case errors.Is(err, engine.ErrNotFound):
		return http.StatusNotFound, "not-found"
	case errors.Is(err, ErrReplayedCounter):
		return http.StatusConflict, "replayed-counter"
	case errors.Is(err, ErrStaleFreshness):
		return http.StatusConflict, "stale-freshness"
	case errors.Is(err, ErrUnknownAnchor):
		return http.StatusConflict, "unknown-anchor"
	case errors.Is(err, ErrEmptyAnchor):
		return http.StatusConflict, "empty-anchor"
	case errors.Is(err, ErrTooLarge), errors.Is(err, engine.ErrEntryTooLarge):
		return http.StatusRequestEntityTooLarge, "too-large"
	case errors.Is(err, ErrOverloaded):
		return http.StatusTooManyRequests, "overloaded"
	case errors.Is(err, engine.ErrPushback):
		return http.StatusServiceUnavailable, "pushback"
	case errors.Is(err, ErrSharedState):
		return http.StatusServiceUnavailable, "shared-state-unavailable"
	case errors.Is(err, engine.ErrFailed):
		return http.StatusServiceUnavailable, "storage-failure"
	case errors.Is(err, engine.ErrClosed), errors.Is(err, errClosed):
		return http.StatusServiceUnavailable, "unavailable"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, "unavailable"
	}
	return http.StatusInternalServerError, "internal"
}

// errClosed: the service has been closed.
var errClosed = errors.New("admission service closed")
