package main

import (
	"os"
	"strings"
	"testing"
)

// TestREADMEWalkthroughIsTheDemos: README.md's "parts as separate
// processes" walkthrough is the demo's closing text, verbatim, so the two
// cannot drift apart (testing/e2e runs that text).
func TestREADMEWalkthroughIsTheDemos(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```sh\n"+walkthrough+"```\n") {
		t.Errorf("README.md has no ```sh block that is cmd/vmledger/demodata/walkthrough.sh verbatim: copy the file into README.md's walkthrough")
	}
}
