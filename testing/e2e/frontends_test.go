package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestTwoFrontEndsTessera runs a second `vmledger log serve` front-end on
// the Tessera engine's database, as the README describes for an operator who
// outgrows one machine: same key, same database, a --data directory of its
// own. An attestation admitted through either front-end verifies, and each
// front-end finds the other's attestations (its index follows the log).
func TestTwoFrontEndsTessera(t *testing.T) {
	d := deployTessera(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	b := d.startLog(d.dir, "log-b", addr)
	if _, err := b.listenAddr("log serving"); err != nil {
		t.Fatalf("second front-end: %v\n%s", err, b.output())
	}
	urlB := "http://" + addr
	b.waitHTTP(urlB + "/checkpoint")

	a := d.newVM("via-a", "4GiB", 0x70)
	bvm := d.newVM("via-b", "8GiB", 0x71)
	for _, c := range []struct {
		v   vm
		log string
	}{{a, d.logURL}, {bvm, urlB}} {
		bundle := d.path(c.v.id + ".bundle.json")
		mustRun(t, "agent", "attest", "--vm", c.v.id, "--config", c.v.config, "--vm-secret", c.v.secret,
			"--coproc", d.coproc(), "--log", c.log, "--trust", d.trust, "--out", bundle)
		mustVerify(t, d, bundle, c.v)
	}

	// Each front-end serves the bundle of the attestation the other one
	// admitted, once its index has read it from the log (within seconds).
	for _, c := range []struct{ base, vm string }{{urlB, a.id}, {d.logURL, bvm.id}} {
		u := c.base + "/v1/vms/" + c.vm + "/bundle"
		deadline := time.Now().Add(20 * time.Second)
		for {
			resp, err := http.Get(u)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET %s = %d after 20 s, want 200: the front-end never indexed the other's attestation", u, resp.StatusCode)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	if code := b.stop(); code != 0 {
		t.Errorf("second front-end: exit %d after SIGTERM, want 0\n%s", code, b.output())
	}
}
