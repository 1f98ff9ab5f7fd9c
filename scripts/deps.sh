#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Install what kiln needs to build and test, from Debian's packages (Debian 12, as root).
set -euo pipefail
pkgs=(build-essential cmake pkg-config libarchive-dev libgit2-dev libyaml-dev libjansson-dev libssl-dev
      libcurl4-openssl-dev libcriterion-dev zlib1g-dev libmicrohttpd-dev skopeo umoci bubblewrap
      docker-registry apache2-utils openssl curl git python3 python3-yaml util-linux busybox-static
      python3-numpy python3-sklearn python3-pil mmdebstrap apt-utils clang libclang-rt-14-dev zstd wrk
      systemd python3-jsonschema chromium chromium-driver fonts-dejavu-core)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
