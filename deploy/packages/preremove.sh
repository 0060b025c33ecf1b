#!/bin/sh
# Stops the service before its files go; the data in /var/lib/sightline
# and the sightline user stay, as a package's data should.
set -e
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
	systemctl disable --now sightline.service >/dev/null || true
fi
