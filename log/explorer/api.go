package explorer

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/vmledger/vmledger/log/tlog"
)

// Errors of the log client.
var (
	// ErrNotFound: the log answered 404 (no such VM, entry or checkpoint).
	ErrNotFound = errors.New("not found")
	// ErrLog: the log answered something else than expected.
	ErrLog = errors.New("log error")
)

// maxBody bounds any answer read from the log.
const maxBody = 4 << 20

// logClient reads a log's public endpoints.
type logClient struct {
	base string // no trailing slash
	hc   *http.Client
}

// get fetches path from the log and returns its body on 200.
func (c *logClient) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: GET %s: %w", ErrLog, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("%w: GET %s: %w", ErrLog, path, err)
	}
	if len(body) > maxBody {
		return nil, fmt.Errorf("%w: GET %s: answer above %d bytes", ErrLog, path, maxBody)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		return body, nil
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("%w: %s", ErrNotFound, reason(body, resp.Status))
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		return nil, fmt.Errorf("%w: the log refused %s: %s", errBadQuery, path, reason(body, resp.Status))
	}
	return nil, fmt.Errorf("%w: GET %s: %s", ErrLog, path, reason(body, resp.Status))
}

// errBadQuery: the log refused the query (4xx other than 404).
var errBadQuery = errors.New("bad query")

// reason extracts the "error" member of a JSON refusal, or the status.
func reason(body []byte, status string) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return e.Error
	}
	if s := strings.TrimSpace(string(body)); s != "" && len(s) < 200 {
		return s
	}
	return status
}

func (c *logClient) getJSON(ctx context.Context, path string, v any) error {
	b, err := c.get(ctx, path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: GET %s: %w", ErrLog, path, err)
	}
	return nil
}

// Attestation is one search result (GET /v1/vms/{id}/attestations,
// GET /v1/attestations).
type Attestation struct {
	Index      uint64 `json:"index"`
	VMID       string `json:"vm_id"`
	ConfigRoot string `json:"config_root"`
	KeyID      string `json:"keyid"`
	Counter    uint64 `json:"counter"`
	Time       string `json:"time"`
}

// searchPage is the answer of the search endpoints.
type searchPage struct {
	Attestations []Attestation `json:"attestations"`
	NextAfter    *uint64       `json:"next_after,omitempty"`
}

// Key is an enrolled co-processor key (GET /v1/coprocessors).
type Key struct {
	KeyID         string  `json:"keyid"`
	Name          string  `json:"name"`
	PublicKey     string  `json:"public_key"`
	EnrolledIndex uint64  `json:"enrolled_index"`
	EnrolledAt    string  `json:"enrolled_at"`
	Revoked       bool    `json:"revoked"`
	RevokedIndex  *uint64 `json:"revoked_index,omitempty"`
	RevokedAt     string  `json:"revoked_at,omitempty"`
	Counter       uint64  `json:"counter"`
}

func (c *logClient) keys(ctx context.Context) ([]Key, error) {
	var r struct {
		Coprocessors []Key `json:"coprocessors"`
	}
	if err := c.getJSON(ctx, "/v1/coprocessors", &r); err != nil {
		return nil, err
	}
	return r.Coprocessors, nil
}

// search asks one of the search endpoints: kind is "vm", "root" or "key".
func (c *logClient) search(ctx context.Context, kind, value string, after *uint64) (*searchPage, error) {
	q := url.Values{}
	var path string
	switch kind {
	case "vm":
		path = "/v1/vms/" + url.PathEscape(value) + "/attestations"
	case "root", "key":
		path = "/v1/attestations"
		q.Set(kind, value)
	default:
		return nil, fmt.Errorf("%w: unknown search %q", errBadQuery, kind)
	}
	if after != nil {
		q.Set("after", fmt.Sprint(*after))
	}
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var p searchPage
	if err := c.getJSON(ctx, path, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// Signature is one signature line of a signed note, parsed but NOT
// verified: the explorer shows who signed; the verifier (in the browser or
// `vmledger verify`) checks the signatures against the customer's trust file.
type Signature struct {
	Name  string
	KeyID string // the 4-byte key hash, hex
	// Cosigned is the time of a C2SP tlog-cosignature/v1 signature (zero
	// for other signature types, such as the log's own).
	Cosigned time.Time
}

// SignedCheckpoint is a checkpoint with its signature lines.
type SignedCheckpoint struct {
	tlog.Checkpoint
	Signatures []Signature
	Raw        string
}

// parseSignedNote splits a signed checkpoint into its body and signatures
// (c2sp.org/signed-note), without verifying any signature.
func parseSignedNote(raw []byte) (*SignedCheckpoint, error) {
	text, sigs, ok := bytes.Cut(raw, []byte("\n\n"))
	if !ok {
		return nil, fmt.Errorf("%w: checkpoint has no signature block", ErrLog)
	}
	cp, err := tlog.ParseCheckpoint(append(text, '\n'))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLog, err)
	}
	sc := &SignedCheckpoint{Checkpoint: cp, Raw: string(raw)}
	for _, line := range strings.Split(strings.TrimSuffix(string(sigs), "\n"), "\n") {
		rest, ok := strings.CutPrefix(line, "— ")
		if !ok {
			return nil, fmt.Errorf("%w: malformed signature line %q", ErrLog, line)
		}
		name, b64, ok := strings.Cut(rest, " ")
		if !ok {
			return nil, fmt.Errorf("%w: malformed signature line %q", ErrLog, line)
		}
		sig, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || len(sig) < 5 {
			return nil, fmt.Errorf("%w: malformed signature line %q", ErrLog, line)
		}
		s := Signature{Name: name, KeyID: fmt.Sprintf("%x", sig[:4])}
		// tlog-cosignature/v1: key hash, 8-byte big-endian timestamp,
		// 64-byte Ed25519 signature.
		if len(sig) == 4+8+64 && name != cp.Origin {
			s.Cosigned = time.Unix(int64(binary.BigEndian.Uint64(sig[4:12])), 0).UTC()
		}
		sc.Signatures = append(sc.Signatures, s)
	}
	return sc, nil
}

func (c *logClient) checkpoint(ctx context.Context) (*SignedCheckpoint, error) {
	b, err := c.get(ctx, "/checkpoint")
	if err != nil {
		return nil, err
	}
	return parseSignedNote(b)
}

// entries returns the entries [from, to) of a tree of the given size, read
// from the entry bundles (c2sp.org/tlog-tiles).
func (c *logClient) entries(ctx context.Context, from, to, size uint64) ([][]byte, error) {
	var out [][]byte
	for n := from / tlog.TileWidth; n*tlog.TileWidth < to; n++ {
		t, ok := tlog.TileForSize(0, n, size)
		if !ok {
			break
		}
		t.Entries = true
		b, err := c.get(ctx, "/"+t.Path())
		if err != nil {
			return nil, err
		}
		es, err := tlog.ParseBundle(b)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrLog, t.Path(), err)
		}
		for i, e := range es {
			idx := n*tlog.TileWidth + uint64(i)
			if idx >= from && idx < to {
				out = append(out, e)
			}
		}
	}
	return out, nil
}
