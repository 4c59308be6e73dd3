#!/bin/sh
# Prints nuthatch's package version: valid for dpkg and rpm (no '-', no
# leading 'v') and ordered like the history it comes from.
#   version.sh              from git: v1.2.3 -> 1.2.3; 4 commits later ->
#                           1.2.3+git4.abc1234; no tag -> 0.0.0~git<N>.<sha>
#                           (<N> commits); uncommitted changes add +dirty
#   version.sh 1.2.0-rc1    a given version, cleaned up: 1.2.0~rc1
set -eu

clean() {
	v=${1#v}
	# A '-' suffix is a pre-release: '~' sorts it before the release.
	v=$(printf '%s' "$v" | sed 's/-/~/g')
	case "$v" in
	[0-9]*) ;;
	*) echo "version.sh: version '$1' must start with a digit" >&2; exit 1 ;;
	esac
	case "$v" in
	*[!0-9A-Za-z.+~]*) echo "version.sh: version '$1' may only contain letters, digits and . + ~ -" >&2; exit 1 ;;
	esac
	printf '%s\n' "$v"
}

if [ $# -gt 0 ] && [ -n "$1" ]; then
	clean "$1"
	exit 0
fi

cd "$(dirname "$0")/.."
if ! git rev-parse --verify -q HEAD >/dev/null 2>&1; then
	echo 0.0.0
	exit 0
fi
sha=$(git rev-parse --short=7 HEAD)
if desc=$(git describe --tags --long --match 'v[0-9]*' 2>/dev/null); then
	# v1.2.3-4-gabc1234
	tag=${desc%-*-g*}
	n=${desc#"$tag"-}
	n=${n%%-g*}
	v=$(clean "$tag")
	[ "$n" = 0 ] || v="$v+git$n.$sha"
else
	v="0.0.0~git$(git rev-list --count HEAD).$sha"
fi
# --no-optional-locks: look, never write the index.
if [ -n "$(git --no-optional-locks status --porcelain --untracked-files=no 2>/dev/null)" ]; then
	v="$v+dirty"
fi
printf '%s\n' "$v"
