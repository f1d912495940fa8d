package tlog_test

import (
	"fmt"

	"github.com/vmledger/vmledger/log/tlog"
)

func ExampleParseTilePath() {
	for _, p := range []string{"tile/0/x001/x234/067", "tile/entries/001.p/17", "tile/0/000.p/08"} {
		t, err := tlog.ParseTilePath(p)
		fmt.Printf("%+v %v\n", t, err)
	}
	// Output:
	// {Level:0 Index:1234067 Width:0 Entries:false} <nil>
	// {Level:0 Index:1 Width:17 Entries:true} <nil>
	// {Level:0 Index:0 Width:0 Entries:false} tile path "tile/0/000.p/08": malformed: not canonical (want "tile/0/000.p/8")
}

func ExampleTileForSize() {
	// The tiles a client needs for the right edge of a tree of 65,793 leaves.
	for level := uint64(0); level < 3; level++ {
		t, ok := tlog.TileForSize(level, (65793>>(8*level))/256, 65793)
		fmt.Println(t.Path(), ok)
	}
	// Output:
	// tile/0/257.p/1 true
	// tile/1/001.p/1 true
	// tile/2/000.p/1 true
}
