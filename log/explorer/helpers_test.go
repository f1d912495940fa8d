package explorer_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
)

type recorder struct {
	h    http.Header
	code int
	body bytes.Buffer
}

func newRecorder() *recorder            { return &recorder{h: http.Header{}} }
func (r *recorder) Header() http.Header { return r.h }
func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = 200
	}
	return r.body.Write(b)
}
func (r *recorder) WriteHeader(code int) { r.code = code }

func mustReq(t *testing.T, path string) *http.Request {
	t.Helper()
	return httptest.NewRequest("GET", path, nil)
}
