#!/bin/sh
# nuthatch post-removal script, for both package formats:
#   deb postrm:  remove | purge | upgrade <new-version> | disappear | abort-* ...
#   rpm %postun: 0 (erase) | 1 or more (upgrade)
# On upgrade it does nothing at all: in RPM this (old) script runs after the
# new version's %post, and the running service must keep its sockets.
set -e

forget_units() {
	# deb: drop deb-systemd-helper's record of the enablement, as
	# dh_installsystemd does on purge; a reinstall enables the socket again.
	if [ -n "${DPKG_MAINTSCRIPT_PACKAGE:-}" ] && command -v deb-systemd-helper >/dev/null 2>&1; then
		deb-systemd-helper purge nuthatch.socket nuthatch.service >/dev/null || true
		deb-systemd-helper unmask nuthatch.socket nuthatch.service >/dev/null || true
	fi
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload || true
		systemctl reset-failed nuthatch.service nuthatch.socket >/dev/null 2>&1 || true
	fi
}

case "$1" in
remove | 0)
	forget_units
	;;
purge)
	forget_units
	# Configuration (dpkg removes its conffiles; this takes what the admin
	# added next to them) and runtime state. The nuthatch account stays, as
	# Debian policy asks: files it owned may still exist.
	rm -rf /etc/nuthatch /run/nuthatch
	;;
esac
exit 0
