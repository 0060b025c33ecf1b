//go:build tools

// Package seaweedfs pins the SeaweedFS server the e2e tests run; it holds
// no code of its own.
package seaweedfs

import _ "github.com/seaweedfs/seaweedfs/weed"
