package explorer_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// chromium returns Debian's chromium, or skips (fails under CI=true).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (apt-get install chromium); CI must run the browser tests")
	}
	t.Skip("chromium is not installed (apt-get install chromium): skipping the browser tests")
	return ""
}

// needWASM skips (fails under CI=true) when the verifier is not built.
func needWASM(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(filepath.Join("assets", "verify.wasm")); err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("assets/verify.wasm is missing: run go generate ./log/explorer before the tests")
	}
	t.Skip("assets/verify.wasm is missing (go generate ./log/explorer): skipping the in-browser verification")
}

// browser is a headless chromium tab that records console errors and
// warnings, uncaught exceptions and every request the page makes.
type browser struct {
	ctx      context.Context
	mu       sync.Mutex
	errs     []string
	requests []string // "METHOD URL"
	shots    string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	exe := chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox, // root in CI containers
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 900),
	)
	actx, cancel := chromedp.NewExecAllocator(t.Context(), opts...)
	t.Cleanup(cancel)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	ctx, cancel = context.WithTimeout(ctx, 4*time.Minute)
	t.Cleanup(cancel)
	b := &browser{ctx: ctx, shots: os.Getenv("VMLEDGER_SCREENSHOTS")}
	if b.shots == "" {
		b.shots = t.TempDir()
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			switch m.Type {
			case chromedp.ConsoleError, chromedp.ConsoleWarning, chromedp.ConsoleException:
				b.mu.Lock()
				b.errs = append(b.errs, fmt.Sprintf("%s: %s (%s:%d)", m.Type, m.Text, m.URL, m.Line))
				b.mu.Unlock()
			}
		}
	}()
	if err := chromedp.Listen(ctx, func(ev any) {
		if ev, ok := ev.(*network.EventRequestWillBeSent); ok {
			b.mu.Lock()
			b.requests = append(b.requests, ev.Request.Method+" "+ev.Request.URL)
			b.mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *browser) do(t *testing.T, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func run[T any](t *testing.T, b *browser, what string, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(b.ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// shot saves a full-page screenshot as NAME.png.
func (b *browser) shot(t *testing.T, name string) {
	t.Helper()
	png := run(t, b, "screenshot "+name, chromedp.FullScreenshot(100))
	p := filepath.Join(b.shots, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
}

func (b *browser) noErrors(t *testing.T) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.errs) > 0 {
		t.Errorf("the browser reported:\n%s", strings.Join(b.errs, "\n"))
	}
	b.errs = nil
}

func (b *browser) takeRequests() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.requests
	b.requests = nil
	return r
}

// verdict waits until the verification result starts with prefix.
func (b *browser) verdict(t *testing.T, prefix string) string {
	t.Helper()
	js := fmt.Sprintf(`(() => { const v = document.getElementById("verdict"); return !!v && v.textContent.startsWith(%q); })()`, prefix)
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[bool](js, chromedp.WithPollingTimeout(2*time.Minute))); err != nil {
		text, _ := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS("#verify-result")))
		t.Fatalf("waiting for a verdict %q: %v; the page shows: %q", prefix, err, text)
	}
	return run(t, b, "verdict", chromedp.Text(chromedp.CSS("#verdict")))
}

// checks returns check name → status as the page shows them.
func (b *browser) checks(t *testing.T) map[string]string {
	t.Helper()
	return run(t, b, "checks", chromedp.Evaluate[map[string]string](`Object.fromEntries([...document.querySelectorAll("#checks li")].map(li => [li.dataset.check, li.dataset.status]))`))
}

// TestBrowser drives Debian's chromium through the explorer of a real
// deployment: the pages load without console errors, a lookup typed on the
// keyboard finds the VM, and the WebAssembly verifier passes the log's
// bundle and refuses a tampered one, naming the inclusion check — without
// the page sending anything anywhere.
func TestBrowser(t *testing.T) {
	b := newBrowser(t)
	needWASM(t)
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
	b.do(t, "home", chromedp.Navigate(f.url+"/"), chromedp.WaitVisible(css("#recent-entries")))
	if size := run(t, b, "tree size", chromedp.Text(css("#tree-size"))); size != "6" {
		t.Errorf("home page tree size %q, want 6", size)
	}
	b.shot(t, "home")
	b.noErrors(t)

	// Lookup with the keyboard: type into the search box, press Enter.
	b.do(t, "lookup",
		chromedp.Focus(css("#q")),
		chromedp.SendKeys(css("#q"), "web01\r"),
		chromedp.WaitVisible(css("table tbody tr")))
	loc := run(t, b, "location", chromedp.Location())
	rows := run(t, b, "rows", chromedp.Evaluate[int](`document.querySelectorAll("table tbody tr").length`))
	if !strings.HasSuffix(loc, "/vms/web01") || rows != 2 {
		t.Errorf("lookup of web01: at %s with %d rows, want /vms/web01 with 2", loc, rows)
	}
	b.shot(t, "lookup")
	b.noErrors(t)

	// The attestation page, then the verification of the log's bundle.
	b.do(t, "attestation", chromedp.Navigate(fmt.Sprintf("%s/attestations/%d", f.url, f.web01)),
		chromedp.WaitVisible(css("#verify-form")))
	b.shot(t, "attestation")
	b.takeRequests()
	b.do(t, "pick files",
		chromedp.SetUploadFiles(css("#trust-file"), []string{abs(f.trustPath)}),
		chromedp.SetUploadFiles(css("#config-file"), []string{abs(f.configPath)}),
		chromedp.SetUploadFiles(css("#secret-file"), []string{abs(f.secretPath)}),
		chromedp.SendKeys(css("#vm-id-input"), "web01"),
		chromedp.Click(css("#verify-button")))
	if v := b.verdict(t, "VERIFIED"); !strings.Contains(v, "VM web01") || !strings.Contains(v, f.root) {
		t.Errorf("verdict %q", v)
	}
	checks := b.checks(t)
	if len(checks) != 8 {
		t.Errorf("%d checks shown, want 8: %v", len(checks), checks)
	}
	for c, s := range checks {
		if s != "pass" && !(c == "consistency" && s == "not requested") {
			t.Errorf("check %s: %s", c, s)
		}
	}
	b.shot(t, "verified")
	b.noErrors(t)

	// A tampered bundle, picked as a file: refused, naming the check.
	bad := filepath.Join(t.TempDir(), "tampered.json")
	if err := os.WriteFile(bad, tamperProof(t, f.web01Bundle), 0o644); err != nil {
		t.Fatal(err)
	}
	b.do(t, "tampered", chromedp.SetUploadFiles(css("#bundle-file"), []string{bad}),
		chromedp.Click(css("#verify-button")))
	if v := b.verdict(t, "REFUSED"); !strings.Contains(v, "inclusion") {
		t.Errorf("verdict for the tampered bundle %q, want it to name the inclusion check", v)
	}
	if s := b.checks(t)["inclusion"]; s != "fail" {
		t.Errorf("inclusion check of the tampered bundle: %q", s)
	}
	b.shot(t, "refused")
	b.noErrors(t)

	// Nothing left the page: every request went to the explorer, and none
	// carried the picked files.
	reqs := b.takeRequests()
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
	b.do(t, "phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile),
		chromedp.Navigate(fmt.Sprintf("%s/attestations/%d", f.url, f.web01)), chromedp.WaitVisible(css("#verify-form")))
	if run(t, b, "phone width", chromedp.Evaluate[bool](overflows)) {
		t.Errorf("the attestation page scrolls sideways on a 390px wide phone")
	}
	b.shot(t, "phone-attestation")
	b.do(t, "phone home", chromedp.Navigate(f.url+"/"), chromedp.WaitVisible(css("#recent-entries")))
	if run(t, b, "phone width", chromedp.Evaluate[bool](overflows)) {
		t.Errorf("the home page scrolls sideways on a 390px wide phone")
	}
	b.shot(t, "phone-home")
	b.noErrors(t)
}
