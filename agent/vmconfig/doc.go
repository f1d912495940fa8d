// Package vmconfig reads VM configurations — the documented JSON and YAML
// format (File) and libvirt domain XML as `virsh dumpxml` prints it
// (ParseLibvirt) — into a Config, and resolves it into the canonical
// measure.Config by hashing the images it names (Resolve).
//
// Parsing is pure (bytes in, Config out); Resolve and LoadFile read files.
// The agent measures with it; a customer's client uses the same code to
// recompute the root of the configuration they ordered (MeasureFile).
//
// # Rules common to all formats
//
//   - Required: the memory size and the vCPU count. Everything else may be
//     missing and becomes an absent leaf (see package measure).
//   - Sizes carry a unit, with libvirt's meanings (UnitScale): KB = 1000,
//     k = KiB = 1024, MB = 1000², M = MiB = 1024², and so on up to E/EiB;
//     "b"/"bytes" are bytes. A bare number is refused in JSON and YAML
//     (libvirt XML defaults to KiB, as libvirt does).
//   - cpusets use libvirt's syntax ("0-3,^2,8") and are canonicalised
//     ("0-1,3,8").
//   - MACs are six hex octets; VLAN ids 1..4094, 0 or missing = untagged.
//   - An image (disk, loader, kernel) is a path — hashed with SHA-256 in one
//     streaming pass, each distinct file once — or a precomputed SHA-256 in
//     hex, which is trusted as given. Relative paths are relative to the
//     configuration file.
//   - At most 16 NICs and 16 disks (the schema's fixed slots); their order
//     in the input is their slot order.
//   - Anything missing, malformed or ambiguous (a duplicate JSON key, a
//     second YAML document, two <memory> elements, a balloon target that
//     differs from the memory size, path and digest together, a package
//     listed twice, …) is refused with a *FieldError naming the field in
//     the input's own terms, wrapping ErrMissing, ErrInvalid, ErrAmbiguous
//     or ErrUnsupported (test with errors.Is). Unknown JSON/YAML fields
//     (names are case-sensitive), values of the wrong type and YAML
//     anchors, aliases and merge keys are refused too, naming the field
//     ("nics[1].vlan"); unknown libvirt elements are ignored (libvirt has
//     many that do not affect what vmledger measures).
//
// The JSON/YAML format is documented on File; what is read from libvirt XML
// on ParseLibvirt. Packages are not part of libvirt's schema: they come from
// a side file (ParsePackages) or a vmledger element in the domain's
// <metadata>.
package vmconfig
