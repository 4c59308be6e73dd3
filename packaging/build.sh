#!/usr/bin/env bash
# Builds nuthatch's .deb and .rpm packages with nfpm (pinned in go.mod as a
# Go tool, so nothing beyond the Go module proxy is needed).
#
#   packaging/build.sh [OUTDIR]          (make package)
#
# Environment:
#   VERSION    package version; default from git (packaging/version.sh)
#   ARCHES     GOARCH values, default "amd64 arm64"
#   PACKAGERS  nfpm packagers, default "deb rpm"
#   GO         the go command, default "go"
#
# Writes OUTDIR/nuthatch_<version>_<arch>.{deb,rpm} (OUTDIR defaults to dist)
# and prints their paths, one per line.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$src/dist}
mkdir -p "$out"
out=$(cd "$out" && pwd)
GO=${GO:-go}
arches=${ARCHES:-amd64 arm64}
packagers=${PACKAGERS:-deb rpm}
version=$("$src/packaging/version.sh" "${VERSION:-}")

# Reproducible file dates: the last commit's, as dpkg-buildpackage would.
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH=$(git -C "$src" log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH

stage=$(mktemp -d "${TMPDIR:-/tmp}/nuthatch-pkg.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,man,doc,examples}
cp -r "$src/systemd" "$src/packaging" "$stage/"
gzip -9n <"$src/packaging/man/nuthatch.8" >"$stage/man/nuthatch.8.gz"
gzip -9n <"$src/packaging/man/nuthatch.hcl.5" >"$stage/man/nuthatch.hcl.5.gz"
cp "$src/README.md" "$stage/doc/"
for f in "$src"/docs/*.md; do
	gzip -9n <"$f" >"$stage/doc/$(basename "$f").gz"
done
cp "$src/etc/nuthatch/example.hcl" "$stage/examples/example.hcl"
cp "$src/packaging/nuthatch.hcl" "$stage/examples/nuthatch.hcl"

date=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
commit=$(git -C "$src" rev-parse --short=7 HEAD 2>/dev/null || echo unknown)
cat >"$stage/changelog.yml" <<YAML
- semver: "$version-1"
  date: $date
  packager: nuthatch maintainers <maintainers@nuthatch-proxy.invalid>
  changes:
    - commit: "$commit"
      note: "Package of nuthatch $version, built from commit $commit."
  deb:
    urgency: medium
    distributions: [unstable]
YAML

for arch in $arches; do
	mkdir -p "$stage/bin/$arch"
	(cd "$src" && CGO_ENABLED=0 GOOS=linux GOARCH=$arch "$GO" build -trimpath \
		-ldflags "-s -w -X main.version=$version" -o "$stage/bin/$arch/nuthatch" ./cmd/nuthatch)
done

# Build nfpm once; `go tool` would re-link it for every package.
nfpm="$stage/nfpm"
(cd "$src" && "$GO" build -o "$nfpm" github.com/goreleaser/nfpm/v2/cmd/nfpm)

for arch in $arches; do
	for p in $packagers; do
		target="$out/nuthatch_${version}_${arch}.$p"
		# nfpm reports errors on standard output: show it only then.
		if ! log=$(cd "$stage" && GOARCH=$arch NUTHATCH_VERSION=$version \
			"$nfpm" package --config "$src/nfpm.yaml" --packager "$p" --target "$target" 2>&1); then
			echo "$log" >&2
			exit 1
		fi
		echo "$target"
	done
done
