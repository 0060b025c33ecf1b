#!/bin/sh
# Lays out the files of Sightline's container image in DIR from a static
# BINARY: in DIR/root the binary, CA certificates for TLS to object storage
# and gateways, and a passwd and group that name the unprivileged user the
# image runs as; DIR/data is the data directory, which the Dockerfile
# copies apart so that it is the only one that user owns. The Dockerfile's
# build stage runs this, and so does the image test in e2e/, so that both
# describe one image.
#
#   deploy/docker/rootfs.sh BINARY DIR
set -eu
if [ $# -ne 2 ]; then
	echo "usage: $0 BINARY DIR" >&2
	exit 2
fi
bin=$1
root=$2/root
certs=/etc/ssl/certs/ca-certificates.crt
if [ ! -r "$certs" ]; then
	echo "$0: $certs not found (Debian's ca-certificates package)" >&2
	exit 1
fi

mkdir -p "$root/etc/ssl/certs" "$2/data"
cp "$bin" "$root/sightline"
chmod 0755 "$root/sightline"
cp "$certs" "$root/etc/ssl/certs/ca-certificates.crt"
# UID and GID 10001: above any system range, and numeric in the image's
# USER so that Kubernetes' runAsNonRoot can check it without the passwd.
cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
sightline:x:10001:10001:sightline:/data:/sbin/nologin
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
sightline:x:10001:
GROUP
