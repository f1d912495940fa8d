package vmconfig

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/vmledger/vmledger/agent/measure"
)

// ErrNotAllowed is wrapped by the FieldError of a libvirt element, attribute
// or value that is not on the allowlist (LibvirtAllowlist): it is neither
// measured nor known not to change what the guest runs, sees or reaches.
var ErrNotAllowed = errors.New("not on vmledger's libvirt allowlist")

// QEMUNamespace is the namespace of libvirt's QEMU passthrough elements
// (<qemu:commandline>, <qemu:override>, …), all refused.
const QEMUNamespace = "http://libvirt.org/schemas/domain/qemu/1.0"

// allowRule is what the allowlist permits on one element.
type allowRule struct {
	attrs map[string][]string // attribute → allowed values (nil: any value)
	text  []string            // nil: no character data; empty: any; else the allowed values
	open  bool                // the whole subtree is allowed (other applications' metadata)
}

// libvirtAllowlist maps an element's path (local names from <domain>
// down, vmledger's metadata elements as "vmledger:NAME") to the attributes
// it may carry. The rule syntax is "attr attr=value|value #text #text=value|value";
// "#open" allows everything below. Everything not listed is refused: a
// libvirt element this table does not know cannot change a measured domain
// without being noticed. The table is documented in the package doc
// (section "The libvirt allowlist"); LibvirtAllowlist lists it.
var libvirtAllowlist = map[string]string{
	"domain":                          "type=kvm|qemu id",
	"domain/name":                     "#text",
	"domain/uuid":                     "#text",
	"domain/genid":                    "#text",
	"domain/title":                    "#text",
	"domain/description":              "#text",
	"domain/metadata":                 "",
	"domain/metadata/vmledger:config": "",
	"domain/metadata/vmledger:config/vmledger:package": "name version manifest-sha256",
	"domain/metadata/vmledger:config/vmledger:image":   "target sha256",

	// Measured: memory, vCPUs and their pinning.
	"domain/memory":                  "unit dumpCore #text",
	"domain/currentMemory":           "unit #text",
	"domain/maxMemory":               "unit slots #text", // refused by ParseLibvirt with its reason
	"domain/vcpu":                    "placement cpuset current #text",
	"domain/cputune":                 "",
	"domain/cputune/vcpupin":         "vcpu cpuset",
	"domain/cputune/emulatorpin":     "cpuset",
	"domain/cputune/iothreadpin":     "iothread cpuset",
	"domain/cputune/shares":          "#text",
	"domain/cputune/period":          "#text",
	"domain/cputune/quota":           "#text",
	"domain/cputune/global_period":   "#text",
	"domain/cputune/global_quota":    "#text",
	"domain/cputune/emulator_period": "#text",
	"domain/cputune/emulator_quota":  "#text",
	"domain/cputune/iothread_period": "#text",
	"domain/cputune/iothread_quota":  "#text",
	"domain/cputune/vcpusched":       "vcpus scheduler priority",
	"domain/cputune/iothreadsched":   "iothreads scheduler priority",
	"domain/cputune/emulatorsched":   "scheduler priority",
	"domain/iothreads":               "#text",
	"domain/iothreadids":             "",
	"domain/iothreadids/iothread":    "id",

	// Host resource placement and limits: where and how fast, not what.
	"domain/resource":                     "",
	"domain/resource/partition":           "#text",
	"domain/memtune":                      "",
	"domain/memtune/hard_limit":           "unit #text",
	"domain/memtune/soft_limit":           "unit #text",
	"domain/memtune/swap_hard_limit":      "unit #text",
	"domain/memtune/min_guarantee":        "unit #text",
	"domain/blkiotune":                    "",
	"domain/blkiotune/weight":             "#text",
	"domain/numatune":                     "",
	"domain/numatune/memory":              "mode placement nodeset",
	"domain/numatune/memnode":             "cellid mode nodeset",
	"domain/memoryBacking":                "",
	"domain/memoryBacking/hugepages":      "",
	"domain/memoryBacking/hugepages/page": "size unit nodeset",
	"domain/memoryBacking/nosharepages":   "",
	"domain/memoryBacking/locked":         "",
	"domain/memoryBacking/discard":        "",
	"domain/memoryBacking/allocation":     "mode threads",
	"domain/memoryBacking/access":         "mode=private",

	// Boot: loader and kernel are measured (and the command line); the
	// variable store (nvram) is the guest's mutable state, see the package doc.
	"domain/os":                  "firmware=efi|bios",
	"domain/os/type":             "arch machine #text",
	"domain/os/loader":           "readonly=yes|no type=rom|pflash secure=yes|no format=raw #text",
	"domain/os/nvram":            "template format=raw #text",
	"domain/os/kernel":           "#text",
	"domain/os/initrd":           "#text",
	"domain/os/cmdline":          "#text",
	"domain/os/boot":             "dev=hd|cdrom|fd",
	"domain/os/bootmenu":         "enable timeout",
	"domain/os/bios":             "useserial rebootTimeout",
	"domain/os/firmware":         "",
	"domain/os/firmware/feature": "enabled name",

	// The virtual platform's shape (CPU model, features, clock, power
	// events): it changes which instructions and timers the guest finds,
	// not which code or data it is given.
	"domain/features":                    "",
	"domain/features/acpi":               "",
	"domain/features/apic":               "eoi",
	"domain/features/pae":                "",
	"domain/features/hap":                "state",
	"domain/features/vmport":             "state",
	"domain/features/pmu":                "state",
	"domain/features/vmcoreinfo":         "state",
	"domain/features/smm":                "state",
	"domain/features/ioapic":             "driver",
	"domain/features/pvspinlock":         "state",
	"domain/features/kvm":                "",
	"domain/features/kvm/hidden":         "state",
	"domain/features/hyperv":             "mode",
	"domain/features/hyperv/relaxed":     "state",
	"domain/features/hyperv/vapic":       "state",
	"domain/features/hyperv/spinlocks":   "state retries",
	"domain/features/hyperv/vpindex":     "state",
	"domain/features/hyperv/runtime":     "state",
	"domain/features/hyperv/synic":       "state",
	"domain/features/hyperv/stimer":      "state",
	"domain/features/hyperv/reset":       "state",
	"domain/features/hyperv/vendor_id":   "state value",
	"domain/features/hyperv/frequencies": "state",
	"domain/features/hyperv/tlbflush":    "state",
	"domain/features/hyperv/ipi":         "state",
	"domain/cpu":                         "mode match check migratable",
	"domain/cpu/model":                   "fallback vendor_id #text",
	"domain/cpu/vendor":                  "#text",
	"domain/cpu/topology":                "sockets dies clusters cores threads",
	"domain/cpu/feature":                 "policy name",
	"domain/cpu/cache":                   "level mode",
	"domain/cpu/maxphysaddr":             "mode bits",
	"domain/clock":                       "offset adjustment timezone basis",
	"domain/clock/timer":                 "name tickpolicy present track frequency mode",
	"domain/on_poweroff":                 "#text",
	"domain/on_reboot":                   "#text",
	"domain/on_crash":                    "#text",
	"domain/on_lockfailure":              "#text",
	"domain/pm":                          "",
	"domain/pm/suspend-to-mem":           "enabled",
	"domain/pm/suspend-to-disk":          "enabled",
	"domain/perf":                        "",
	"domain/perf/event":                  "name enabled",
	"domain/seclabel":                    "type model relabel",
	"domain/seclabel/label":              "#text",
	"domain/seclabel/imagelabel":         "#text",
	"domain/seclabel/baselabel":          "#text",

	"domain/devices": "",
	// The emulator must be one of Options.Emulators.
	"domain/devices/emulator": "#text",

	// Disks: only image files (hashed), or empty removable drives.
	"domain/devices/disk":        "type=file device=disk|cdrom|floppy",
	"domain/devices/disk/driver": "name=qemu type=raw|qcow2 cache io discard detect_zeroes queues queue_size iothread error_policy rerror_policy",
	"domain/devices/disk/source": "file index",
	// <backingStore> and its nested chain: see backingStorePaths.
	"domain/devices/disk/target":                 "dev bus tray removable rotation_rate",
	"domain/devices/disk/readonly":               "",
	"domain/devices/disk/serial":                 "#text",
	"domain/devices/disk/wwn":                    "#text",
	"domain/devices/disk/vendor":                 "#text",
	"domain/devices/disk/product":                "#text",
	"domain/devices/disk/boot":                   "order",
	"domain/devices/disk/alias":                  "name",
	"domain/devices/disk/address":                addressAttrs,
	"domain/devices/disk/geometry":               "cyls heads secs trans",
	"domain/devices/disk/blockio":                "logical_block_size physical_block_size",
	"domain/devices/disk/iotune":                 "",
	"domain/devices/disk/iotune/total_bytes_sec": "#text",
	"domain/devices/disk/iotune/read_bytes_sec":  "#text",
	"domain/devices/disk/iotune/write_bytes_sec": "#text",
	"domain/devices/disk/iotune/total_iops_sec":  "#text",
	"domain/devices/disk/iotune/read_iops_sec":   "#text",
	"domain/devices/disk/iotune/write_iops_sec":  "#text",

	"domain/devices/controller":         "type index model ports vectors",
	"domain/devices/controller/driver":  "queues iothread cmd_per_lun max_sectors ioeventfd",
	"domain/devices/controller/model":   "name",
	"domain/devices/controller/target":  "chassisNr chassis port busNr index hotplug",
	"domain/devices/controller/alias":   "name",
	"domain/devices/controller/address": addressAttrs,
	"domain/devices/controller/master":  "startport",

	// NICs: measured (MAC, VLAN). No option ROM file, no scripts, no
	// passthrough or vhost-user back ends, no network boot.
	"domain/devices/interface":                        "type=bridge|network|direct|ethernet|user",
	"domain/devices/interface/mac":                    "address",
	"domain/devices/interface/source":                 "bridge network portgroup dev mode portid",
	"domain/devices/interface/vlan":                   "trunk",
	"domain/devices/interface/vlan/tag":               "id nativeMode",
	"domain/devices/interface/target":                 "dev managed",
	"domain/devices/interface/model":                  "type",
	"domain/devices/interface/driver":                 "name queues txmode ioeventfd event_idx rx_queue_size tx_queue_size",
	"domain/devices/interface/driver/host":            "csum gso tso4 tso6 ecn ufo mrg_rxbuf",
	"domain/devices/interface/driver/guest":           "csum tso4 tso6 ecn ufo",
	"domain/devices/interface/alias":                  "name",
	"domain/devices/interface/address":                addressAttrs,
	"domain/devices/interface/mtu":                    "size",
	"domain/devices/interface/link":                   "state",
	"domain/devices/interface/virtualport":            "type",
	"domain/devices/interface/virtualport/parameters": "interfaceid profileid managerid typeid typeidversion instanceid",
	"domain/devices/interface/bandwidth":              "",
	"domain/devices/interface/bandwidth/inbound":      "average peak burst floor",
	"domain/devices/interface/bandwidth/outbound":     "average peak burst",
	"domain/devices/interface/filterref":              "filter",
	"domain/devices/interface/filterref/parameter":    "name value",
	"domain/devices/interface/rom":                    "bar=on|off enabled=no",

	"domain/devices/input":                    "type=mouse|keyboard|tablet bus",
	"domain/devices/input/alias":              "name",
	"domain/devices/input/address":            addressAttrs,
	"domain/devices/graphics":                 "type=vnc|spice port autoport listen keymap sharePolicy websocket tlsPort defaultMode",
	"domain/devices/graphics/listen":          "type=address|network|none address network",
	"domain/devices/video":                    "",
	"domain/devices/video/model":              "type vram heads primary ram vram64 vgamem",
	"domain/devices/video/model/acceleration": "accel3d=no accel2d",
	"domain/devices/video/alias":              "name",
	"domain/devices/video/address":            addressAttrs,
	"domain/devices/sound":                    "model",
	"domain/devices/sound/alias":              "name",
	"domain/devices/sound/address":            addressAttrs,
	"domain/devices/audio":                    "id type=none|spice",

	// Character devices: a pseudo-terminal, a socket libvirt creates, or
	// nothing; no host files or devices, no network.
	"domain/devices/serial":              "type=pty|unix|null|spicevmc",
	"domain/devices/serial/source":       "path mode=bind",
	"domain/devices/serial/target":       "type port",
	"domain/devices/serial/target/model": "name",
	"domain/devices/serial/alias":        "name",
	"domain/devices/serial/address":      addressAttrs,
	"domain/devices/console":             "type=pty|unix|null|spicevmc tty",
	"domain/devices/console/source":      "path mode=bind",
	"domain/devices/console/target":      "type port",
	"domain/devices/console/alias":       "name",
	"domain/devices/channel":             "type=pty|unix|spicevmc|qemu-vdagent",
	"domain/devices/channel/source":      "path mode=bind",
	"domain/devices/channel/target":      "type=virtio name state",
	"domain/devices/channel/alias":       "name",
	"domain/devices/channel/address":     addressAttrs,

	"domain/devices/memballoon":         "model autodeflate freePageReporting",
	"domain/devices/memballoon/stats":   "period",
	"domain/devices/memballoon/alias":   "name",
	"domain/devices/memballoon/address": addressAttrs,
	"domain/devices/rng":                "model",
	"domain/devices/rng/backend":        "model=random #text=/dev/urandom|/dev/random",
	"domain/devices/rng/rate":           "bytes period",
	"domain/devices/rng/alias":          "name",
	"domain/devices/rng/address":        addressAttrs,
	"domain/devices/watchdog":           "model action",
	"domain/devices/watchdog/alias":     "name",
	"domain/devices/watchdog/address":   addressAttrs,
	"domain/devices/panic":              "model",
	"domain/devices/panic/address":      addressAttrs,
	"domain/devices/tpm":                "model",
	"domain/devices/tpm/backend":        "type=emulator version persistent_state",
	"domain/devices/tpm/alias":          "name",
	"domain/devices/tpm/address":        addressAttrs,
	"domain/devices/hub":                "type",
	"domain/devices/hub/address":        addressAttrs,
	"domain/devices/iommu":              "model",
	"domain/devices/iommu/driver":       "intremap caching_mode eim iotlb aw_bits",
	"domain/devices/iommu/alias":        "name",
	"domain/devices/iommu/address":      addressAttrs,
}

const addressAttrs = "type domain bus slot function multifunction controller target unit port reg cssid ssid devno iobase irq"

// libvirtRefusals explains the refusal of elements known to be dangerous;
// anything else not on the allowlist gets a generic reason.
var libvirtRefusals = map[string]string{
	"domain/os/dtb":                      "a device tree file the guest boots with is not measured",
	"domain/os/acpi":                     "ACPI table files given to the guest are not measured",
	"domain/os/smbios":                   "SMBIOS data given to the guest is not measured",
	"domain/os/boot/@dev":                "network boot (PXE) runs code from the network",
	"domain/sysinfo":                     "SMBIOS/sysinfo strings given to the guest are not measured",
	"domain/launchSecurity":              "the confidential-computing policy (SEV, TDX) is not measured",
	"domain/keywrap":                     "key wrapping settings are not measured",
	"domain/cpu/numa":                    "NUMA cells can share guest memory (memAccess) and are not measured",
	"domain/memoryBacking/source":        "a memory backing file or memfd can be shared with other processes",
	"domain/memoryBacking/access/@mode":  "shared guest memory can be read and written by other processes",
	"domain/devices/disk/@type":          "only image files (type='file') can be hashed and held; network, volume, block and directory disks are not measured",
	"domain/devices/disk/@device":        "removable media and LUN passthrough are not measured",
	"domain/devices/disk/driver/@type":   "only raw and qcow2 images are measured",
	"domain/devices/filesystem":          "a shared host directory is not measured and gives the guest host files",
	"domain/devices/hostdev":             "a passthrough host device is not measured",
	"domain/devices/redirdev":            "a redirected USB device is not measured",
	"domain/devices/smartcard":           "a smartcard device is not measured",
	"domain/devices/shmem":               "shared memory with the host or other VMs is not measured",
	"domain/devices/memory":              "hotplugged memory (DIMM, NVDIMM files, virtio-mem) is not measured",
	"domain/devices/vsock":               "a host socket the guest can reach is not measured",
	"domain/devices/crypto":              "a host crypto device is not measured",
	"domain/devices/pstore":              "a host file the guest writes is not measured",
	"domain/devices/lease":               "storage leases are not measured",
	"domain/devices/parallel":            "a parallel port can be backed by a host file or device",
	"domain/devices/interface/rom/@file": "an option ROM file runs in the guest and is not measured",
	"domain/devices/interface/script":    "a host script is run for the interface",
	"domain/devices/interface/backend":   "host files opened for the interface are not measured",
	"domain/devices/interface/boot":      "network boot (PXE) runs code from the network",
	"domain/devices/interface/@type":     "passthrough, vhost-user and socket interfaces are not measured",
	"domain/devices/rng/backend":         "only /dev/urandom or /dev/random may feed the guest's RNG",
	"domain/devices/tpm/backend/@type":   "a passthrough host TPM is not measured",
	"domain/devices/serial/log":          "console logs write to host files",
	"domain/devices/console/log":         "console logs write to host files",
}

// backingStorePaths allows a disk's backing chain as libvirt writes it,
// nested one <backingStore> per image, down to the schema's limit: each
// image is measured (disk.<i>.backing) and must be the file the qcow2
// header above names.
func backingStorePaths() map[string]string {
	m := map[string]string{}
	p := "domain/devices/disk"
	for range measure.MaxBacking + 1 {
		p += "/backingStore"
		m[p] = "type=file index"
		m[p+"/format"] = "type=raw|qcow2"
		m[p+"/source"] = "file index"
	}
	return m
}

var parsedAllowlist = func() map[string]allowRule {
	maps.Copy(libvirtAllowlist, backingStorePaths())
	m := make(map[string]allowRule, len(libvirtAllowlist))
	for path, spec := range libvirtAllowlist {
		r := allowRule{attrs: map[string][]string{}}
		for _, f := range strings.Fields(spec) {
			name, vals, restricted := strings.Cut(f, "=")
			var vs []string
			if restricted {
				vs = strings.Split(vals, "|")
			}
			switch name {
			case "#open":
				r.open = true
			case "#text":
				r.text = []string{}
				if restricted {
					r.text = vs
				}
			default:
				r.attrs[name] = vs
			}
		}
		m[path] = r
	}
	return m
}()

// LibvirtAllowlist lists the allowlist: each element path ("domain/devices/disk")
// with the attributes it may carry ("type=file" when the value is
// restricted), sorted.
func LibvirtAllowlist() []string {
	var out []string
	for path, spec := range libvirtAllowlist {
		out = append(out, strings.TrimSpace(path+" "+spec))
	}
	sort.Strings(out)
	return out
}

// xmlNode is an element of a domain XML.
type xmlNode struct {
	prefix, local, space string // prefix as written, local name, namespace URL
	attrs                []xml.Attr
	text                 strings.Builder
	kids                 []*xmlNode
}

func (n *xmlNode) written() string {
	if n.prefix != "" {
		return n.prefix + ":" + n.local
	}
	return n.local
}

// key is the node's name in allowlist paths.
func (n *xmlNode) key() string {
	switch n.space {
	case "":
		return n.local
	case MetadataNS:
		return "vmledger:" + n.local
	}
	return "{" + n.space + "}" + n.local
}

// parseXMLTree reads data as a tree, resolving namespace prefixes itself so
// that refusals name elements as the document writes them.
func parseXMLTree(data []byte) (*xmlNode, error) {
	dec := xml.NewDecoder(bytes.NewReader(data))
	type frame struct {
		node *xmlNode
		ns   map[string]string
	}
	var stack []frame
	var root *xmlNode
	resolve := func(ns map[string]string, prefix string) (string, bool) {
		if prefix == "xml" {
			return "http://www.w3.org/XML/1998/namespace", true
		}
		u, ok := ns[prefix]
		return u, ok || prefix == ""
	}
	for {
		tok, err := dec.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			ns := map[string]string{}
			if len(stack) > 0 {
				for k, v := range stack[len(stack)-1].ns {
					ns[k] = v
				}
			}
			n := &xmlNode{prefix: tok.Name.Space, local: tok.Name.Local}
			for _, a := range tok.Attr {
				switch {
				case a.Name.Space == "xmlns":
					ns[a.Name.Local] = a.Value
				case a.Name.Space == "" && a.Name.Local == "xmlns":
					ns[""] = a.Value
				default:
					n.attrs = append(n.attrs, a)
				}
			}
			u, ok := resolve(ns, n.prefix)
			if !ok {
				return nil, fmt.Errorf("element <%s>: undeclared namespace prefix %q", n.written(), n.prefix)
			}
			n.space = u
			if len(stack) == 0 {
				if root != nil {
					return nil, errors.New("more than one root element")
				}
				root = n
			} else {
				p := stack[len(stack)-1].node
				p.kids = append(p.kids, n)
			}
			stack = append(stack, frame{n, ns})
		case xml.EndElement:
			if len(stack) == 0 {
				return nil, fmt.Errorf("unexpected </%s>", tok.Name.Local)
			}
			top := stack[len(stack)-1].node
			if tok.Name.Space != top.prefix || tok.Name.Local != top.local {
				return nil, fmt.Errorf("element <%s> closed by </%s>", top.written(), (&xmlNode{prefix: tok.Name.Space, local: tok.Name.Local}).written())
			}
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 {
				stack[len(stack)-1].node.text.Write(tok)
			} else if len(bytes.TrimSpace(tok)) > 0 {
				return nil, errors.New("text outside the root element")
			}
		case xml.Directive:
			return nil, errors.New("DTD directives (<!…>) are not allowed")
		}
	}
	if root == nil {
		return nil, errors.New("no root element")
	}
	if len(stack) > 0 {
		return nil, fmt.Errorf("element <%s> is not closed", stack[len(stack)-1].node.written())
	}
	return root, nil
}

// checkAllowlist walks the domain and refuses the first element, attribute
// or value (in document order) that the allowlist does not permit.
func checkAllowlist(root *xmlNode) error {
	return walkAllowed(root, root.key(), "/"+root.written())
}

func walkAllowed(n *xmlNode, path, xpath string) error {
	if n.space != "" && n.space != MetadataNS {
		// Elements of other namespaces: inside <metadata> libvirt keeps
		// them for other applications and never interprets them.
		if strings.HasPrefix(path, "domain/metadata/") && !strings.HasPrefix(path, "domain/metadata/vmledger:") {
			return nil
		}
	}
	r, ok := parsedAllowlist[path]
	if !ok {
		return refuse(path, xpath, "element <%s>", n.written())
	}
	if r.open {
		return nil
	}
	seenAttr := map[xml.Name]bool{}
	for _, a := range n.attrs {
		if seenAttr[a.Name] {
			return refuse(path+"/@"+a.Name.Local, xpath+"/@"+a.Name.Local, "attribute %s given twice", a.Name.Local)
		}
		seenAttr[a.Name] = true
		name := a.Name.Local
		if a.Name.Space != "" {
			name = a.Name.Space + ":" + name
		}
		vals, ok := r.attrs[name]
		if !ok || a.Name.Space != "" {
			return refuse(path+"/@"+name, xpath+"/@"+name, "attribute %s", name)
		}
		if vals != nil && !slices.Contains(vals, a.Value) {
			return refuse(path+"/@"+name, xpath+"/@"+name, "%s=%q (allowed: %s)", name, abbrev(a.Value), strings.Join(vals, ", "))
		}
	}
	text := strings.TrimSpace(n.text.String())
	switch {
	case text == "":
	case r.text == nil:
		return refuse(path+"/text()", xpath+"/text()", "text in <%s>", n.written())
	case len(r.text) > 0 && !slices.Contains(r.text, text):
		return refuse(path, xpath, "<%s>%s</%s> (allowed: %s)", n.written(), abbrev(text), n.written(), strings.Join(r.text, ", "))
	}
	count := map[string]int{}
	for _, k := range n.kids {
		count[k.written()]++
	}
	seen := map[string]int{}
	isDevices := path == "domain/devices"
	for _, k := range n.kids {
		w := k.written()
		seen[w]++
		step := w
		if count[w] > 1 || isDevices {
			step = fmt.Sprintf("%s[%d]", w, seen[w])
		}
		if err := walkAllowed(k, path+"/"+k.key(), xpath+"/"+step); err != nil {
			return err
		}
	}
	return nil
}

func refuse(path, xpath, format string, args ...any) error {
	why, ok := libvirtRefusals[path]
	if !ok {
		why = "neither measured nor known not to change what the guest runs, sees or reaches; remove it"
	}
	return fieldErr(xpath, ErrNotAllowed, "%s: %s", fmt.Sprintf(format, args...), why)
}
