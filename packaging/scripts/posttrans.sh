#!/bin/sh
# nuthatch rpm %posttrans: runs once the whole transaction is done, after the
# old package's %postun. If %post recorded an upgrade, hand the running
# service over to the new binary (binary upgrade, no restart).
set -e
marker=/var/lib/rpm-state/nuthatch/upgrade
if [ -e "$marker" ]; then
	rm -f "$marker"
	rmdir /var/lib/rpm-state/nuthatch 2>/dev/null || true
	/usr/libexec/nuthatch/upgrade-service || true
fi
exit 0
