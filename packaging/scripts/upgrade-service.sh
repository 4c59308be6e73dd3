#!/bin/sh
# Replaces the running nuthatch.service with the binary now installed at
# /usr/bin/nuthatch without closing its listening sockets (nginx's
# "upgrade || restart"): SIGUSR2 asks the running master to start the new
# binary, hand it the sockets and the service's main PID, and drain. The
# package scripts run this after an upgrade; admins may run it too.
#
# Exit status: 0 when the service runs the new binary, was restarted, or is
# not running; non-zero when a needed restart failed (2: misuse).
# NUTHATCH_UPGRADE_TIMEOUT (seconds, default 60) bounds the wait.
set -eu

unit=nuthatch.service
conf=/etc/nuthatch/nuthatch.hcl
timeout=${NUTHATCH_UPGRADE_TIMEOUT:-60}

say() { echo "nuthatch: $*" >&2; }

prop() { systemctl show -p "$1" --value "$unit" 2>/dev/null || true; }

restart() {
	say "$1; restarting $unit (open client connections are closed)"
	if command -v deb-systemd-invoke >/dev/null 2>&1 && [ -n "${DPKG_MAINTSCRIPT_PACKAGE:-}" ]; then
		deb-systemd-invoke restart "$unit"
	else
		systemctl restart "$unit"
	fi
}

case "$timeout" in
'' | *[!0-9]*) say "NUTHATCH_UPGRADE_TIMEOUT must be a number of seconds"; exit 2 ;;
esac

# Without systemd as init (a container build, a chroot) there is nothing to do.
[ -d /run/systemd/system ] || exit 0
systemctl is-active --quiet "$unit" || exit 0

# A configuration the new binary rejects would make the hand-over fail and a
# restart fail too: keep the old binary serving and say why.
if [ -r "$conf" ] && ! /usr/bin/nuthatch -t -c "$conf" >/dev/null; then
	say "the new binary rejects $conf; the running service keeps the old binary."
	say "fix the file, then run: systemctl restart $unit"
	exit 0
fi

old=$(prop MainPID)
case "$old" in
'' | 0 | *[!0-9]*)
	restart "no main process known for $unit"
	exit $?
	;;
esac

if ! systemctl kill --kill-whom=main --signal=SIGUSR2 "$unit"; then
	restart "could not signal the running master (pid $old)"
	exit $?
fi

# A hand-over usually takes well under a second.
deadline=$(($(date +%s) + timeout))
while [ "$(date +%s)" -lt "$deadline" ]; do
	sleep 0.2 2>/dev/null || sleep 1
	pid=$(prop MainPID)
	state=$(prop ActiveState)
	if [ "$pid" != "$old" ] && [ "$pid" != 0 ] && [ "$state" = active ]; then
		say "binary upgrade done: main process $old -> $pid"
		exit 0
	fi
	case "$state" in
	failed | inactive)
		restart "$unit became $state during the binary upgrade"
		exit $?
		;;
	esac
done
restart "the running master (pid $old) did not hand over to the new binary within ${timeout}s"
