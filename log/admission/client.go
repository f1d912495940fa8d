package admission

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// RefusedError is a refusal by the service, as a client sees it.
type RefusedError struct {
	Status int
	Reason string // the machine-readable reason, e.g. "unauthorized"
	Detail string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, e.Reason, e.Detail)
}

// EnrolClient calls the enrolment endpoints of the log at base (e.g.
// "http://127.0.0.1:8080") with an admin token.
type EnrolClient struct {
	Base  string
	Token []byte
	HTTP  *http.Client // nil: http.DefaultClient
}

// Enrol asks the log to enrol the PEM public key under name. created is
// false when the key was enrolled already.
func (c *EnrolClient) Enrol(ctx context.Context, name string, publicKeyPEM []byte) (k Key, created bool, err error) {
	body, _ := json.Marshal(EnrolRequest{Name: name, PublicKey: string(publicKeyPEM)})
	code, err := c.do(ctx, http.MethodPost, "/v1/coprocessors", body, &k)
	return k, code == http.StatusCreated, err
}

// Revoke asks the log to revoke keyID.
func (c *EnrolClient) Revoke(ctx context.Context, keyID string) (Key, error) {
	var k Key
	_, err := c.do(ctx, http.MethodDelete, "/v1/coprocessors/"+keyID, nil, &k)
	return k, err
}

func (c *EnrolClient) do(ctx context.Context, method, path string, body []byte, out any) (int, error) {
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.Base, "/")+path, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+string(c.Token))
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		var e errorBody
		if json.Unmarshal(b, &e) != nil || e.Reason == "" {
			e.Reason, e.Error = "unknown", strings.TrimSpace(string(b))
		}
		return resp.StatusCode, &RefusedError{Status: resp.StatusCode, Reason: e.Reason, Detail: e.Error}
	}
	if err := json.Unmarshal(b, out); err != nil {
		return resp.StatusCode, fmt.Errorf("%s %s: unexpected answer %.200q", method, path, b)
	}
	return resp.StatusCode, nil
}
