#!/bin/sh
# nuthatch post-installation script, for both package formats:
#   deb postinst: configure [<old-version>] | abort-upgrade | abort-remove ...
#   rpm %post:    1 (install) | 2 (upgrade)
# Like debhelper's and RPM's systemd snippets, it only talks to systemd when
# systemd is the running init; in a chroot or an image build it just installs.
set -e

# The account of the service (and of the workers when started as root).
add_user() {
	if command -v systemd-sysusers >/dev/null 2>&1; then
		systemd-sysusers /usr/lib/sysusers.d/nuthatch.conf
	elif ! getent passwd nuthatch >/dev/null; then
		if command -v adduser >/dev/null 2>&1; then
			adduser --system --group --quiet --no-create-home \
				--home /nonexistent --gecos "nuthatch cache proxy" nuthatch
		else
			useradd --system --user-group --no-create-home \
				--home-dir /nonexistent --shell /usr/sbin/nologin \
				--comment "nuthatch cache proxy" nuthatch
		fi
	fi
}

# The socket unit is enabled and started; the service is not: systemd starts
# it on the first connection (socket activation).
enable_socket_deb() {
	if ! command -v deb-systemd-helper >/dev/null 2>&1; then
		[ -n "$1" ] || systemctl enable nuthatch.socket >/dev/null 2>&1 || true
		return 0
	fi
	# As dh_installsystemd: remember the admin's choice across upgrades.
	deb-systemd-helper unmask nuthatch.socket >/dev/null || true
	if deb-systemd-helper --quiet was-enabled nuthatch.socket; then
		deb-systemd-helper enable nuthatch.socket >/dev/null || true
	else
		deb-systemd-helper update-state nuthatch.socket >/dev/null || true
	fi
}

start_socket() {
	[ -d /run/systemd/system ] || return 0
	systemctl daemon-reload || true
	if systemctl is-enabled --quiet nuthatch.socket 2>/dev/null; then
		if command -v deb-systemd-invoke >/dev/null 2>&1 && [ -n "${DPKG_MAINTSCRIPT_PACKAGE:-}" ]; then
			deb-systemd-invoke start nuthatch.socket >/dev/null || true
		else
			systemctl start nuthatch.socket || true
		fi
	fi
}

case "$1" in
configure)
	# deb: $2 is the previously configured version, empty on a first install.
	add_user
	enable_socket_deb "$2"
	start_socket
	if [ -n "$2" ]; then
		/usr/libexec/nuthatch/upgrade-service || true
	fi
	;;
1)
	# rpm install.
	add_user
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload || true
		systemctl enable --now nuthatch.socket || true
	else
		systemctl enable nuthatch.socket >/dev/null 2>&1 || true
	fi
	;;
2)
	# rpm upgrade: the old package's %preun/%postun still run after this, so
	# the running service is upgraded in %posttrans, once they are done.
	add_user
	[ ! -d /run/systemd/system ] || systemctl daemon-reload || true
	mkdir -p /var/lib/rpm-state/nuthatch
	: >/var/lib/rpm-state/nuthatch/upgrade
	;;
abort-upgrade | abort-remove | abort-deconfigure)
	# deb error unwinding: the old version is configured again and was never
	# stopped (prerm upgrade does not stop it); nothing to undo.
	;;
*)
	echo "nuthatch postinst called with unknown argument '$1'" >&2
	exit 1
	;;
esac
exit 0
