package rekorcompat_test

import (
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"

	"github.com/sigstore/rekor/pkg/generated/models"
	"github.com/sigstore/rekor/pkg/verify"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// serve runs one request through the log's handler in process.
func (l *testLog) serve(path string) (int, []byte) {
	rec := httptest.NewRecorder()
	l.srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.Bytes()
}

// newFuzzLog is a log of 7 entries for the fuzz targets.
func newFuzzLog(f *testing.F) *testLog {
	l := newTestLog(f, nil)
	l.grow(f, 7)
	return l
}

// FuzzLogIndex: whatever the logIndex parameter, the answer is 200 with
// an entry Rekor verifies, 404 or 422, never anything else.
func FuzzLogIndex(f *testing.F) {
	for _, s := range []string{"0", "1", "6", "7", "-1", "01", "abc", "", "1e1", "9223372036854775807", "9223372036854775808", " 1", "1 "} {
		f.Add(s)
	}
	l := newFuzzLog(f)
	f.Fuzz(func(t *testing.T, index string) {
		code, b := l.serve("/api/v1/log/entries?" + url.Values{"logIndex": {index}}.Encode())
		switch code {
		case http.StatusOK:
			var le models.LogEntry
			if err := json.Unmarshal(b, &le); err != nil {
				t.Fatal(err)
			}
			for _, e := range le {
				if err := verify.VerifyInclusion(t.Context(), &e); err != nil {
					t.Fatalf("logIndex %q: %v", index, err)
				}
				if strconv.FormatInt(*e.LogIndex, 10) != index {
					t.Fatalf("logIndex %q answered entry %d", index, *e.LogIndex)
				}
			}
		case http.StatusNotFound, http.StatusUnprocessableEntity:
		default:
			t.Fatalf("logIndex %q: %d %s", index, code, b)
		}
	})
}

// FuzzLogProof: whatever firstSize and lastSize, the answer is 200 with a
// proof that verifies, 400 or 422.
func FuzzLogProof(f *testing.F) {
	for _, s := range [][2]string{{"1", "7"}, {"3", "5"}, {"7", "7"}, {"0", "7"}, {"5", "3"}, {"1", "8"}, {"x", "7"}, {"", ""}, {"-1", "2"}} {
		f.Add(s[0], s[1])
	}
	l := newFuzzLog(f)
	f.Fuzz(func(t *testing.T, first, last string) {
		code, b := l.serve("/api/v1/log/proof?" + url.Values{"firstSize": {first}, "lastSize": {last}}.Encode())
		switch code {
		case http.StatusOK:
			var p models.ConsistencyProof
			if err := json.Unmarshal(b, &p); err != nil {
				t.Fatal(err)
			}
			m, _ := strconv.Atoi(first)
			n, _ := strconv.Atoi(last)
			hashes := make([][]byte, len(p.Hashes))
			for i, h := range p.Hashes {
				hashes[i], _ = hex.DecodeString(h)
			}
			if err := proof.VerifyConsistency(rfc6962.DefaultHasher, uint64(m), uint64(n), hashes, l.root(t, m), l.root(t, n)); err != nil {
				t.Fatalf("firstSize %q lastSize %q: %v", first, last, err)
			}
		case http.StatusBadRequest, http.StatusUnprocessableEntity:
		default:
			t.Fatalf("firstSize %q lastSize %q: %d %s", first, last, code, b)
		}
	})
}
