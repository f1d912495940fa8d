package measure_test

import (
	"fmt"

	"github.com/vmledger/vmledger/agent/measure"
)

// The worked example of the package documentation.
func Example() {
	var secret measure.Secret
	for i := range secret {
		secret[i] = byte(i)
	}
	cfg := &measure.Config{MemoryBytes: 2 << 30, CPUCount: 2}
	m, err := measure.Measure(cfg, secret)
	if err != nil {
		panic(err)
	}
	mem, _ := m.Leaf(measure.NameMemoryBytes)
	fmt.Println(mem.Index, mem.Name, mem.Display, mem.Hash)
	fmt.Println("root", m.Root)

	// The provider discloses the memory size alone; anyone holding the
	// attested root checks it.
	d, _ := m.Disclose(measure.NameMemoryBytes)
	fmt.Println("disclosure verifies:", d.Verify(m.Root) == nil)
	// Output:
	// 37 memory.bytes 2147483648 20b6eae22a4d3bfd7f58ef37eb5726c022c60064dd7f9619619d09a5fe210aac
	// root 0decbc8a74f50bd1aaa9fd9f1b9b285b9fd84ca4020baa0b492813284b3a65c1
	// disclosure verifies: true
}
