package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var (
	// docsRef is a reference to a page under docs/.
	docsRef = regexp.MustCompile(`docs/[A-Za-z0-9_-]+\.md`)
	// outsideRef names a design document that is not in the repository.
	outsideRef = regexp.MustCompile(`\b(DESIGN|SPECS|STYLE)(\.md|\s*§)`)
)

// TestDocReferencesResolve: every docs/ page that Go code refers to exists,
// and no Go file refers to a design document outside the repository.
func TestDocReferencesResolve(t *testing.T) {
	root := filepath.Join("..", "..")
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		checked++
		for _, ref := range docsRef.FindAllString(string(b), -1) {
			if _, err := os.Stat(filepath.Join(root, ref)); err != nil {
				t.Errorf("%s refers to %s, which is not in the repository", path, ref)
			}
		}
		if m := outsideRef.FindString(string(b)); m != "" {
			t.Errorf("%s refers to %q, a document outside the repository: point it at docs/", path, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 100 {
		t.Fatalf("checked %d Go files, want the whole repository", checked)
	}
}
