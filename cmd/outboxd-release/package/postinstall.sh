#!/bin/sh
# outboxd post-install (deb: "configure", rpm: 1 = install, 2 = upgrade).
# Creates the user and the state directory, lets the service user read the
# config, enables the unit (does not start it), and restarts a running
# service after an upgrade so the new binary takes over its outbox. Works on
# a host without systemd too.
set -e

if command -v systemd-sysusers >/dev/null 2>&1; then
	systemd-sysusers /usr/lib/sysusers.d/outboxd.conf
elif ! getent passwd outboxd >/dev/null 2>&1; then
	useradd --system --user-group --home-dir /var/lib/outboxd --shell /usr/sbin/nologin outboxd
fi
if command -v systemd-tmpfiles >/dev/null 2>&1; then
	systemd-tmpfiles --create /usr/lib/tmpfiles.d/outboxd.conf || true
fi
install -d -m 0700 -o outboxd -g outboxd /var/lib/outboxd
# The config may hold tokens and passwords: root writes it, outboxd reads it.
chown root:outboxd /etc/outboxd/config.yaml
chmod 0640 /etc/outboxd/config.yaml

if command -v systemctl >/dev/null 2>&1; then
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload || true
	fi
	systemctl enable outboxd.service >/dev/null 2>&1 || true
	if [ -d /run/systemd/system ]; then
		# Only a service that runs is restarted (upgrade); a new install stays stopped.
		systemctl try-restart outboxd.service || true
	fi
fi
exit 0
