// Package browsertest drives Debian's chromium from Go tests (with
// chromedp) for the log explorer's pages: it records console errors and
// warnings, uncaught exceptions and every request a page makes, takes
// screenshots, and reads the in-browser verifier's result.
package browsertest

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

// Chromium returns Debian's chromium, or skips (fails under CI=true).
func Chromium(t testing.TB) string {
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

// NeedWASM skips (fails under CI=true) when the verifier is not built.
func NeedWASM(t testing.TB, path string) {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(path + " is missing: run go generate ./log/explorer before the tests")
	}
	t.Skip(path + " is missing (go generate ./log/explorer): skipping the in-browser verification")
}

// Browser is a headless chromium tab that records console errors and
// warnings, uncaught exceptions and every request the page makes.
type Browser struct {
	ctx      context.Context
	mu       sync.Mutex
	errs     []string
	requests []string // "METHOD URL"
	shots    string
}

// New starts a headless chromium (Chromium) for t, stopped at its end.
func New(t testing.TB) *Browser {
	t.Helper()
	exe := Chromium(t)
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
	b := &Browser{ctx: ctx, shots: os.Getenv("VMLEDGER_SCREENSHOTS")}
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

// Do runs steps, failing t on error.
func (b *Browser) Do(t testing.TB, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// Run runs one action and returns its value, failing t on error.
func Run[T any](t testing.TB, b *Browser, what string, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(b.ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// Shot saves a full-page screenshot as NAME.png.
func (b *Browser) Shot(t testing.TB, name string) {
	t.Helper()
	png := Run(t, b, "screenshot "+name, chromedp.FullScreenshot(100))
	p := filepath.Join(b.shots, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
}

// ShotOf saves a screenshot of the element sel as name.png.
func (b *Browser) ShotOf(t testing.TB, name, sel string) {
	t.Helper()
	png := Run(t, b, "screenshot "+name, chromedp.Screenshot(chromedp.CSS(sel)))
	p := filepath.Join(b.shots, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
}

// NoErrors fails t if the page logged an error or a warning since the
// last call.
func (b *Browser) NoErrors(t testing.TB) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.errs) > 0 {
		t.Errorf("the browser reported:\n%s", strings.Join(b.errs, "\n"))
	}
	b.errs = nil
}

// TakeRequests returns the requests recorded since the last call.
func (b *Browser) TakeRequests() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.requests
	b.requests = nil
	return r
}

// Verdict waits until the verification result starts with prefix.
func (b *Browser) Verdict(t testing.TB, prefix string) string {
	t.Helper()
	js := fmt.Sprintf(`(() => { const v = document.getElementById("verdict"); return !!v && v.textContent.startsWith(%q); })()`, prefix)
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[bool](js, chromedp.WithPollingTimeout(2*time.Minute))); err != nil {
		text, _ := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS("#verify-result")))
		t.Fatalf("waiting for a verdict %q: %v; the page shows: %q", prefix, err, text)
	}
	return Run(t, b, "verdict", chromedp.Text(chromedp.CSS("#verdict")))
}

// Checks returns check name → status as the page shows them.
func (b *Browser) Checks(t testing.TB) map[string]string {
	t.Helper()
	return Run(t, b, "checks", chromedp.Evaluate[map[string]string](`Object.fromEntries([...document.querySelectorAll("#checks li")].map(li => [li.dataset.check, li.dataset.status]))`))
}

// WaitPath waits until the tab has loaded a page at path, across the
// navigations of a form submission and its redirects.
func (b *Browser) WaitPath(t testing.TB, path string) {
	t.Helper()
	js := fmt.Sprintf(`location.pathname === %q && document.readyState === "complete"`, path)
	for {
		ok, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](js))
		if err == nil && ok {
			return
		}
		select {
		case <-b.ctx.Done():
			t.Fatalf("waiting for the page %s: %v (last error: %v)", path, b.ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
