// Package configs holds Sightline's example configs. They are embedded in
// the binary: all-in-one.yaml is what `sightline` runs with no arguments,
// and every file is reachable as builtin:<name> (without .yaml).
package configs

import "embed"

// FS holds every *.yaml in this directory.
//
//go:embed *.yaml
var FS embed.FS
