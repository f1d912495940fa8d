package datadir

import (
	"errors"
	"path/filepath"
	"testing"
)

func TestMark(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	marked, err := Open(dir, "log")
	if err != nil || marked {
		t.Fatalf("Open(new) = %v, %v; want false, nil", marked, err)
	}
	if err := Mark(dir, "log"); err != nil {
		t.Fatal(err)
	}
	if marked, err := Open(dir, "log"); err != nil || !marked {
		t.Fatalf("Open(marked) = %v, %v; want true, nil", marked, err)
	}
	if _, err := Open(dir, "witness"); !errors.Is(err, ErrWrongKind) {
		t.Fatalf("Open(a log's directory as a witness's) = %v, want ErrWrongKind", err)
	}
}
