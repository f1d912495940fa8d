package e2e

import (
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/vmledger/vmledger/coproc/evidence"
	"github.com/vmledger/vmledger/log/bundle"
	"github.com/vmledger/vmledger/log/explorer/browsertest"
)

// TestExplorerInBrowser opens the explorer that the real log serve answers
// at / in Debian's chromium: a lookup typed on the keyboard finds the VM
// the agent attested (on a swtpm, with the 2-of-3 witness quorum), and the
// in-browser verifier passes its bundle with the customer's files.
func TestExplorerInBrowser(t *testing.T) {
	b := browsertest.New(t)
	browsertest.NeedWASM(t, filepath.Join("..", "..", "log", "explorer", "assets", "verify.wasm"))
	d := deploy(t)
	v := d.newVM("web01", "4GiB", 0x58)
	out := d.path("web01.bundle.json")
	mustRun(t, "agent", "attest", "--vm", v.id, "--config", v.config, "--vm-secret", v.secret,
		"--coproc", d.coproc(), "--log", d.logURL, "--trust", d.trust, "--out", out)
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	bb, err := bundle.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	// The browser reads no file a trust file names: the key goes inline.
	pemBytes, err := os.ReadFile(d.tpmPEM)
	if err != nil {
		t.Fatal(err)
	}
	blk, rest := pem.Decode(pemBytes)
	if blk == nil {
		t.Fatalf("%s holds no PEM block", d.tpmPEM)
	}
	line := "coprocessor host-a " + base64.StdEncoding.EncodeToString(blk.Bytes)
	// The TPM's identity (AK and NV index Names) follows the key, as
	// coproc info prints it; inline it is tpm=<base64>.
	if id, _ := pem.Decode(rest); id != nil && id.Type == evidence.PEMType {
		line += " tpm=" + base64.StdEncoding.EncodeToString(id.Bytes)
	} else {
		t.Fatalf("%s holds no %q block after the key", d.tpmPEM, evidence.PEMType)
	}
	trust := d.writeTrust("trust-inline.txt", d.logVKey, d.witnessLines, line)
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }

	b.Do(t, "home", chromedp.Navigate(d.logURL+"/"), chromedp.WaitVisible(css("#recent-entries")))
	// The growth chart, from log serve's own Rekor-compatible reads: as
	// many points drawn as listed, the last one at the tree size.
	chart := browsertest.Run(t, b, "growth chart", chromedp.Evaluate[[]string](`(() => {
		const rows = [...document.querySelectorAll("#growth-points tbody tr")];
		return [String(document.querySelectorAll("#growth-chart svg circle").length), String(rows.length),
			rows.length ? rows[rows.length-1].cells[0].textContent : "", document.getElementById("tree-size").textContent];
	})()`))
	if chart[0] == "0" || chart[0] != chart[1] || chart[2] != chart[3] {
		t.Errorf("home page growth chart: %s points drawn, %s listed, the last at size %q, tree size %q", chart[0], chart[1], chart[2], chart[3])
	}
	b.Shot(t, "log-serve-home")
	b.NoErrors(t)
	b.Do(t, "lookup", chromedp.Focus(css("#q")), chromedp.SendKeys(css("#q"), "web01\r"))
	// The search redirects to the VM's page; wait for it, not for the
	// table of the page that is being left.
	b.WaitPath(t, "/vms/web01")
	b.Do(t, "lookup table", chromedp.WaitVisible(css("table tbody tr")))
	if loc := browsertest.Run(t, b, "location", chromedp.Location()); !strings.HasSuffix(loc, "/vms/web01") {
		t.Errorf("lookup of web01 went to %s", loc)
	}
	link := fmt.Sprintf(`a[href="/attestations/%d"]`, bb.Proof.Index)
	b.Do(t, "open the attestation", chromedp.Click(css(link)), chromedp.WaitVisible(css("#verify-form")))
	b.Do(t, "verify",
		chromedp.SetUploadFiles(css("#trust-file"), []string{trust}),
		chromedp.SetUploadFiles(css("#config-file"), []string{v.config}),
		chromedp.SetUploadFiles(css("#secret-file"), []string{v.secret}),
		chromedp.SendKeys(css("#vm-id-input"), v.id),
		chromedp.Click(css("#verify-button")))
	if got := b.Verdict(t, "VERIFIED"); !strings.Contains(got, "VM web01") || !strings.Contains(got, origin) {
		t.Errorf("verdict %q", got)
	}
	b.Shot(t, "log-serve-verified")
	b.NoErrors(t)
	for _, r := range b.TakeRequests() {
		if method, url, _ := strings.Cut(r, " "); method != "GET" || !strings.HasPrefix(url, d.logURL+"/") {
			t.Errorf("the page sent %s", r)
		}
	}
}
