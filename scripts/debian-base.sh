#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Make a Debian 12 base image with Python from Debian's own packages (mmdebstrap), as an OCI image
# layout, for builds that cannot reach Docker Hub (this machine, CI, an air-gapped network).
#
#   bash scripts/debian-base.sh DIR [PACKAGE...]
#
# DIR becomes an OCI layout holding the image tagged "bookworm": Debian 12 (variant apt) with python3,
# python3-pip, ca-certificates and the PACKAGEs given, its config's Env naming its Python as python:*-slim
# images do (PYTHON_VERSION=3.11, which kiln checks python_version against without reading the layer).
# Use it as `base: oci:DIR:bookworm`. The layout
# is made once: a second call with the same packages reuses it (delete DIR to make it again). The
# mirror is $KILN_DEBIAN_MIRROR, else http://deb.debian.org/debian. Needs root (apt-get installs
# mmdebstrap and umoci when they are missing).
set -euo pipefail
dir=${1:?usage: debian-base.sh DIR [PACKAGE...]}
shift
mirror=${KILN_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# KILN_BASE_PYTHON=0: a plain Debian root, without Python (for images whose steps install it)
python=${KILN_BASE_PYTHON:-1}
if [ "$python" = 0 ]; then pkgs=(ca-certificates "$@"); else pkgs=(python3 python3-pip ca-certificates "$@"); fi
want="bookworm $mirror ${pkgs[*]} env:PYTHON_VERSION"
if [ -f "$dir/index.json" ] && [ "$(cat "$dir/.kiln-base" 2>/dev/null)" == "$want" ]; then
	echo "oci:$dir:bookworm"
	exit 0
fi
missing=()
for p in mmdebstrap umoci; do command -v "$p" >/dev/null || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kiln-base.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
include=$(IFS=,; echo "${pkgs[*]}")
# Valid-Until is not checked: a mirror may be a dated snapshot of the archive
mmdebstrap --quiet --variant=apt --include="$include" \
	--aptopt='Acquire::Check-Valid-Until "false"' \
	--customize-hook='rm -rf "$1"/var/cache/apt/*.bin "$1"/var/log/apt "$1"/var/log/dpkg.log' \
	bookworm "$tmp/root.tar" "deb $mirror bookworm main" >&2
pyver=$(tar -tf "$tmp/root.tar" | sed -n 's|^\(\./\)\{0,1\}usr/bin/python\(3\.[0-9]*\)$|\2|p' | sort -V | tail -1)
[ -n "$pyver" ] || [ "$python" = 0 ] || { echo "debian-base.sh: no usr/bin/python3.X in the root" >&2; exit 1; }
pyenv=()
[ "$python" = 0 ] || pyenv=(--config.env "PYTHON_VERSION=$pyver" --config.cmd python3)
umoci init --layout "$tmp/layout" >&2
umoci new --image "$tmp/layout:bookworm" >&2
SOURCE_DATE_EPOCH=0 umoci raw add-layer --image "$tmp/layout:bookworm" "$tmp/root.tar" >&2
umoci config --image "$tmp/layout:bookworm" --os linux --architecture amd64 \
	--config.env "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
	--config.env "LANG=C.UTF-8" "${pyenv[@]}" >&2
umoci gc --layout "$tmp/layout" >&2
echo "$want" >"$tmp/layout/.kiln-base"
rm -rf "$dir"
mkdir -p "$(dirname "$dir")"
mv "$tmp/layout" "$dir"
echo "oci:$dir:bookworm"
