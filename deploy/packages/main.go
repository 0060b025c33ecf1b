// Command packages builds Sightline's .deb and .rpm from a static binary,
// as nfpm.yaml describes them: the binary in /usr/bin, a systemd unit,
// the all-in-one config in /etc/sightline/config.yaml and a sightline
// system user that owns /var/lib/sightline. Run it from the repository's
// root, where the paths in nfpm.yaml start:
//
//	CGO_ENABLED=0 go build -o sightline ./cmd/sightline
//	go run ./deploy/packages -binary ./sightline -version 1.2.3 -out dist/
//
// It prints the path of each package it wrote.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the rpm packager
)

func main() {
	config := flag.String("config", "deploy/packages/nfpm.yaml", "nfpm config")
	binary := flag.String("binary", "sightline", "the static sightline binary to package")
	version := flag.String("version", "0.0.0-dev", "package version (semver)")
	arch := flag.String("arch", runtime.GOARCH, "GOARCH the binary is built for")
	formats := flag.String("formats", "deb,rpm", "comma-separated package formats")
	out := flag.String("out", "dist", "directory to write the packages to")
	flag.Parse()
	paths, err := build(*config, *binary, *version, *arch, *out, strings.Split(*formats, ","))
	if err != nil {
		fmt.Fprintln(os.Stderr, "packages:", err)
		os.Exit(1)
	}
	for _, p := range paths {
		fmt.Println(p)
	}
}

// build writes one package per format into out and returns their paths.
func build(config, binary, version, arch, out string, formats []string) ([]string, error) {
	abs, err := filepath.Abs(binary)
	if err != nil {
		return nil, err
	}
	vars := map[string]string{"SIGHTLINE_BINARY": abs, "VERSION": version, "ARCH": arch}
	conf, err := nfpm.ParseFileWithEnvMapping(config, func(k string) string { return vars[k] })
	if err != nil {
		return nil, fmt.Errorf("%s: %w", config, err)
	}
	if err := conf.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", config, err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	var paths []string
	for _, format := range formats {
		pkgr, err := nfpm.Get(format)
		if err != nil {
			return nil, err
		}
		info, err := conf.Get(format)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", format, err)
		}
		// Package prepares the contents for its format itself.
		info = nfpm.WithDefaults(info)
		path := filepath.Join(out, pkgr.ConventionalFileName(info))
		f, err := os.Create(path)
		if err != nil {
			return nil, err
		}
		if err := pkgr.Package(info, f); err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: %w", format, err)
		}
		if err := f.Close(); err != nil {
			return nil, err
		}
		paths = append(paths, path)
	}
	return paths, nil
}
