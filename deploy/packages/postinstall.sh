#!/bin/sh
# Creates the sightline system user and its data directory, and enables the
# service without starting it: the operator starts it once the config in
# /etc/sightline/config.yaml is theirs.
set -e
if ! getent group sightline >/dev/null; then
	groupadd --system sightline
fi
if ! getent passwd sightline >/dev/null; then
	useradd --system --gid sightline --home-dir /var/lib/sightline --no-create-home \
		--shell /usr/sbin/nologin --comment "Sightline" sightline
fi
install -d -o sightline -g sightline -m 0750 /var/lib/sightline
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	systemctl enable sightline.service >/dev/null
fi
