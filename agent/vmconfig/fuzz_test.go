package vmconfig

import (
	"encoding/json"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/vmledger/vmledger/agent/measure"
)

// anyImage opens every path as the same small content.
func anyImage(string) (io.ReadCloser, int64, error) {
	return io.NopCloser(strings.NewReader("image")), 5, nil
}

// checkParsed is what must hold for every configuration a parser accepts:
// it resolves and measures without error, the manifest checks, and its file
// form parses back to the same Config in JSON and in YAML.
func checkParsed(t *testing.T, c *Config) {
	t.Helper()
	claimed := map[string]bool{} // images whose digest the input claims: the agent may not read them
	for _, d := range c.Disks {
		if d.Image != nil && d.Image.Claimed != nil {
			claimed[d.Image.Path] = true
		}
	}
	for _, img := range []*Image{c.BootLoader, c.Kernel, c.Initrd, c.NVRAMTemplate} {
		if img != nil && img.Claimed != nil {
			claimed[img.Path] = true
		}
	}
	mc, err := c.Resolve(t.Context(), ResolveOptions{Open: func(p string) (io.ReadCloser, int64, error) {
		if claimed[p] {
			return nil, 0, os.ErrPermission
		}
		return anyImage(p)
	}})
	if err != nil {
		t.Fatalf("accepted config does not resolve: %v", err)
	}
	mc.VMID = "fuzz"
	m, err := measure.V2.Measure(mc, measure.Secret{1})
	if err != nil {
		t.Fatalf("accepted config does not measure: %v", err)
	}
	if err := m.Check(); err != nil {
		t.Fatalf("measurement does not check: %v", err)
	}
	js, err := json.Marshal(c.File())
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseJSON(js)
	if err != nil {
		t.Fatalf("ParseJSON(File()) = %v\n%s", err, js)
	}
	c = fileView(c)
	if !reflect.DeepEqual(back, c) {
		t.Fatalf("JSON round trip changed the config:\n got %+v\nwant %+v\n%s", back, c, js)
	}
	ys, err := yaml.Marshal(c.File())
	if err != nil {
		t.Fatal(err)
	}
	back, err = ParseYAML(ys)
	if err != nil {
		t.Fatalf("ParseYAML(File()) = %v\n%s", err, ys)
	}
	if !reflect.DeepEqual(back, c) {
		t.Fatalf("YAML round trip changed the config:\n got %+v\nwant %+v\n%s", back, c, ys)
	}
}

// fileView is c as its file form keeps it: what only libvirt XML says
// (claimed digests, the XPath of an image, a declared backing chain of an
// image file, whose chain the file's header gives) is dropped.
func fileView(c *Config) *Config {
	v := *c
	strip := func(img *Image) *Image {
		if img == nil {
			return nil
		}
		return &Image{Path: img.Path, SHA256: img.SHA256}
	}
	v.Disks = nil
	for _, d := range c.Disks {
		nd := Disk{Target: d.Target, Image: strip(d.Image), Format: d.Format}
		if d.Image != nil && d.Image.SHA256 != nil {
			for _, b := range d.Backing {
				nd.Backing = append(nd.Backing, strip(b))
			}
		}
		v.Disks = append(v.Disks, nd)
	}
	v.BootLoader, v.Kernel = strip(c.BootLoader), strip(c.Kernel)
	v.Initrd, v.NVRAMTemplate = strip(c.Initrd), strip(c.NVRAMTemplate)
	return &v
}

func addFixture(f *testing.F, name string) {
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
}

func FuzzParseJSON(f *testing.F) {
	addFixture(f, "web01.json")
	f.Fuzz(func(t *testing.T, data []byte) {
		if c, err := ParseJSON(data); err == nil {
			checkParsed(t, c)
		}
	})
}

func FuzzParseYAML(f *testing.F) {
	addFixture(f, "web01.yaml")
	addFixture(f, "web01.json") // JSON is YAML
	f.Fuzz(func(t *testing.T, data []byte) {
		if c, err := ParseYAML(data); err == nil {
			checkParsed(t, c)
		}
	})
}

func FuzzParseLibvirt(f *testing.F) {
	addFixture(f, "web01.xml")
	f.Fuzz(func(t *testing.T, data []byte) {
		if c, err := ParseLibvirt(data, Options{}); err == nil {
			checkParsed(t, c)
		}
	})
}

// TestRoundTripFixtures runs the fuzz property on the fixtures.
func TestRoundTripFixtures(t *testing.T) {
	for _, name := range []string{"web01.json", "web01.yaml", "web01.xml"} {
		t.Run(name, func(t *testing.T) {
			c, _, err := LoadFile("testdata/"+name, "", Options{})
			if err != nil {
				t.Fatal(err)
			}
			checkParsed(t, c)
		})
	}
}
