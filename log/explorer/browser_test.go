package explorer_test

import (
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/vmledger/vmledger/log/explorer"
	"github.com/vmledger/vmledger/log/explorer/browsertest"
)

// TestBrowser drives Debian's chromium through the explorer of a real
// deployment: the pages load without console errors, a lookup typed on the
// keyboard finds the VM, and the WebAssembly verifier passes the log's
// bundle and refuses a tampered one, naming the inclusion check — without
// the page sending anything anywhere.
func TestBrowser(t *testing.T) {
	b := browsertest.New(t)
	browsertest.NeedWASM(t, filepath.Join("assets", "verify.wasm"))
	f := startFixture(t)
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }
	overflows := `document.documentElement.scrollWidth > window.innerWidth + 1`

	// Home.
	b.Do(t, "home", chromedp.Navigate(f.url+"/"), chromedp.WaitVisible(css("#recent-entries")))
	if size := browsertest.Run(t, b, "tree size", chromedp.Text(css("#tree-size"))); size != "6" {
		t.Errorf("home page tree size %q, want 6", size)
	}
	// The growth chart: one drawn point per listed point, the last at the
	// tree size, with an accessible name.
	chart := browsertest.Run(t, b, "growth chart", chromedp.Evaluate[map[string]any](`(() => {
		const svg = document.querySelector("#growth-chart svg");
		if (!svg) return {};
		const rows = [...document.querySelectorAll("#growth-points tbody tr")];
		return {points: svg.querySelectorAll("circle").length, rows: rows.length,
			last: rows[rows.length-1].cells[0].textContent,
			entries: rows.filter(r => r.cells[2].textContent.includes("integration of entry")).length,
			title: document.getElementById(svg.getAttribute("aria-labelledby").split(" ")[0]).textContent,
			width: svg.getBoundingClientRect().width};
	})()`))
	// All 6 entries are sampled; a cosignature dated after the last
	// integration adds a seventh point, at size 6 too.
	if chart["entries"] != float64(6) || chart["points"] != chart["rows"] || (chart["rows"] != float64(6) && chart["rows"] != float64(7)) ||
		chart["last"] != "6" || chart["title"] != "Tree size over time" {
		t.Errorf("home page growth chart %v, want the 6 entries drawn and listed (and maybe a cosignature), ending at size 6, titled", chart)
	}
	b.Shot(t, "home")
	b.ShotOf(t, "home-growth", `section[aria-labelledby="growth"]`)
	b.NoErrors(t)

	// Lookup with the keyboard: type into the search box, press Enter.
	b.Do(t, "lookup", chromedp.Focus(css("#q")), chromedp.SendKeys(css("#q"), "web01\r"))
	// The search redirects to the VM's page; wait for it, not for the
	// table of the page that is being left.
	b.WaitPath(t, "/vms/web01")
	b.Do(t, "lookup table", chromedp.WaitVisible(css("table tbody tr")))
	loc := browsertest.Run(t, b, "location", chromedp.Location())
	rows := browsertest.Run(t, b, "rows", chromedp.Evaluate[int](`document.querySelectorAll("table tbody tr").length`))
	if !strings.HasSuffix(loc, "/vms/web01") || rows != 2 {
		t.Errorf("lookup of web01: at %s with %d rows, want /vms/web01 with 2", loc, rows)
	}
	b.Shot(t, "lookup")
	b.NoErrors(t)

	// Enrolled and revoked keys.
	b.Do(t, "keys", chromedp.Navigate(f.url+"/keys"), chromedp.WaitVisible(css("#keys-table")))
	if n := browsertest.Run(t, b, "revoked keys", chromedp.Evaluate[int](`document.querySelectorAll("#keys-table .tag.bad").length`)); n != 1 {
		t.Errorf("%d revoked keys shown, want 1", n)
	}
	b.Shot(t, "keys")
	b.NoErrors(t)

	// The attestation page, then the verification of the log's bundle.
	b.Do(t, "attestation", chromedp.Navigate(fmt.Sprintf("%s/attestations/%d", f.url, f.web01)),
		chromedp.WaitVisible(css("#verify-form")))
	b.Shot(t, "attestation")
	// Every control has a label a screen reader announces.
	unlabelled := browsertest.Run(t, b, "labels", chromedp.Evaluate[[]string](
		`[...document.querySelectorAll("input, select, button")].filter(e => e.type !== "submit" && e.labels.length === 0 && !e.getAttribute("aria-label")).map(e => e.id || e.name)`))
	if len(unlabelled) > 0 {
		t.Errorf("controls without a label: %v", unlabelled)
	}
	b.TakeRequests()
	b.Do(t, "pick files",
		chromedp.SetUploadFiles(css("#trust-file"), []string{abs(f.trustPath)}),
		chromedp.SetUploadFiles(css("#config-file"), []string{abs(f.configPath)}),
		chromedp.SetUploadFiles(css("#secret-file"), []string{abs(f.secretPath)}),
		chromedp.SendKeys(css("#vm-id-input"), "web01"),
		chromedp.Click(css("#verify-button")))
	if v := b.Verdict(t, "VERIFIED"); !strings.Contains(v, "VM web01") || !strings.Contains(v, f.root) {
		t.Errorf("verdict %q", v)
	}
	checks := b.Checks(t)
	if len(checks) != len(allChecks) {
		t.Errorf("%d checks shown, want %d: %v", len(checks), len(allChecks), checks)
	}
	for _, c := range allChecks {
		if _, ok := checks[c]; !ok {
			t.Errorf("check %s not shown", c)
		}
	}
	for c, s := range checks {
		if s != "pass" && !(c == "consistency" && s == "not requested") {
			t.Errorf("check %s: %s", c, s)
		}
	}
	b.Shot(t, "verified")
	b.NoErrors(t)

	// A tampered bundle, picked as a file: refused, naming the check.
	bad := filepath.Join(t.TempDir(), "tampered.json")
	if err := os.WriteFile(bad, tamperProof(t, f.web01Bundle), 0o644); err != nil {
		t.Fatal(err)
	}
	b.Do(t, "tampered", chromedp.SetUploadFiles(css("#bundle-file"), []string{bad}),
		chromedp.Click(css("#verify-button")))
	if v := b.Verdict(t, "REFUSED"); !strings.Contains(v, "inclusion") {
		t.Errorf("verdict for the tampered bundle %q, want it to name the inclusion check", v)
	}
	if s := b.Checks(t)["inclusion"]; s != "fail" {
		t.Errorf("inclusion check of the tampered bundle: %q", s)
	}
	b.Shot(t, "refused")
	b.NoErrors(t)

	// Nothing left the page: every request went to the explorer, and none
	// carried the picked files.
	reqs := b.TakeRequests()
	if len(reqs) == 0 {
		t.Errorf("no request recorded: the network listener does not work")
	}
	for _, r := range reqs {
		method, url, _ := strings.Cut(r, " ")
		if method != "GET" || !strings.HasPrefix(url, f.url+"/") {
			t.Errorf("the page sent %s", r)
		}
	}

	// A phone: nothing scrolls sideways.
	b.Do(t, "phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile),
		chromedp.Navigate(fmt.Sprintf("%s/attestations/%d", f.url, f.web01)), chromedp.WaitVisible(css("#verify-form")))
	if browsertest.Run(t, b, "phone width", chromedp.Evaluate[bool](overflows)) {
		t.Errorf("the attestation page scrolls sideways on a 390px wide phone")
	}
	b.Shot(t, "phone-attestation")
	b.Do(t, "phone home", chromedp.Navigate(f.url+"/"), chromedp.WaitVisible(css("#recent-entries")))
	if browsertest.Run(t, b, "phone width", chromedp.Evaluate[bool](overflows)) {
		t.Errorf("the home page scrolls sideways on a 390px wide phone")
	}
	b.Shot(t, "phone-home")
	b.ShotOf(t, "phone-home-growth", "#growth-chart")
	b.NoErrors(t)
}

// TestGrowthChartBrowser draws the growth of a real badger log that grew
// over a few seconds: the points go left to right and upwards, the times
// are labelled at both ends, and on a phone nothing scrolls sideways.
func TestGrowthChartBrowser(t *testing.T) {
	b := browsertest.New(t)
	l := newGrowthLog(t, nil)
	for k, n := range []int{10, 40, 90, 160} {
		if k > 0 {
			time.Sleep(1100 * time.Millisecond) // the next second: integration times are in seconds
		}
		l.grow(t, n)
	}
	ex, err := explorer.New(explorer.Config{LogURL: l.url})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ex.Handler())
	defer srv.Close()
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }
	points := `[...document.querySelectorAll("#growth-chart circle")].map(c => [c.cx.baseVal.value, c.cy.baseVal.value])`
	check := func(name string) {
		t.Helper()
		b.Do(t, name, chromedp.Navigate(srv.URL+"/"), chromedp.WaitVisible(css("#growth-chart")))
		ps := browsertest.Run(t, b, "points", chromedp.Evaluate[[][2]float64](points))
		if len(ps) < 2 || ps[0][0] >= ps[len(ps)-1][0] {
			t.Fatalf("%s: points %v, want them spread left to right", name, ps)
		}
		for i := 1; i < len(ps); i++ {
			if ps[i][0] < ps[i-1][0] || ps[i][1] > ps[i-1][1] {
				t.Errorf("%s: point %d %v after %v: not rightwards and upwards", name, i, ps[i], ps[i-1])
			}
		}
		if n := browsertest.Run(t, b, "time labels", chromedp.Evaluate[int](`document.querySelectorAll("#growth-chart text").length`)); n != 4 {
			t.Errorf("%s: %d labels, want 4 (two sizes, two times)", name, n)
		}
		b.ShotOf(t, name, "#growth-chart")
		b.NoErrors(t)
	}
	check("growth-spread")
	b.Do(t, "phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
	check("phone-growth-spread")
	if browsertest.Run(t, b, "phone width", chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth + 1`)) {
		t.Errorf("the home page with a growth chart scrolls sideways on a 390px wide phone")
	}
}
