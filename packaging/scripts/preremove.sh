#!/bin/sh
# nuthatch pre-removal script, for both package formats:
#   deb prerm:  remove | upgrade <new-version> | deconfigure | failed-upgrade
#   rpm %preun: 0 (erase) | 1 or more (upgrade: another version stays)
# Only a removal stops the service: an upgrade keeps it serving and hands it
# over to the new binary afterwards.
set -e

stop_units() {
	if [ -d /run/systemd/system ]; then
		# The socket first, so that no new connection re-activates the service.
		systemctl stop nuthatch.socket nuthatch.service || true
	fi
	# Disable even without a running systemd (symlinks only).
	systemctl disable nuthatch.service nuthatch.socket >/dev/null 2>&1 || true
}

case "$1" in
remove | 0) stop_units ;;
esac
exit 0
