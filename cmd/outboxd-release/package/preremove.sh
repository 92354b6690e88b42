#!/bin/sh
# outboxd pre-remove (deb: "remove" or "upgrade", rpm: 0 = erase, 1 = upgrade).
# On removal, stop and disable the service. Queued records stay in
# /var/lib/outboxd until a purge.
set -e
case "$1" in
remove | 0)
	if command -v systemctl >/dev/null 2>&1; then
		if [ -d /run/systemd/system ]; then
			systemctl stop outboxd.service || true
		fi
		systemctl disable outboxd.service >/dev/null 2>&1 || true
	fi
	;;
esac
exit 0
