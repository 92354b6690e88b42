#!/bin/sh
# outboxd post-remove (deb: "remove", "purge", "upgrade", ...; rpm: 0 = erase).
# A purge deletes the outbox and everything else outboxd kept; the system
# user stays, as packaging policy asks (files it owned may exist elsewhere).
set -e
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl daemon-reload || true
fi
case "$1" in
purge)
	rm -rf /var/lib/outboxd /run/outboxd
	;;
esac
exit 0
