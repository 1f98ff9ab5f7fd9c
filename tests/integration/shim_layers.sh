#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# shim_layers.sh DIR: check that the shim's files in DIR (shim/) call only downwards (shim/README.md): no
# file includes a header of a layer above its own, and every file has a layer. Prints each violation;
# exits 1 when there is one.
set -uo pipefail
dir=${1:?usage: shim_layers.sh SHIM_DIR}

# The layers, bottom first; a file may include the headers of its own layer and of those below.
layer_of() {
	case $1 in
	shim.h | log.h | core.h | files.h | validate.h | log.c | webhook.c | files.c | files_*.c | validate.c | \
		validate_*.c | gpu.c | prefetch.c | inputs.c | weights.h | weights.c) echo 0 ;;
	worker.h | native.h | worker.c | native.c | native_*.c) echo 1 ;;
	table.h | predictions.c | responses.c) echo 2 ;;
	http.h | server.c | connections.c | requests.c | sse.c) echo 3 ;;
	main.c) echo 4 ;;
	*) echo "" ;;
	esac
}
names=(base worker table http main)

bad=0
for path in "$dir"/*.c "$dir"/*.h; do
	f=$(basename "$path")
	mine=$(layer_of "$f")
	if [ -z "$mine" ]; then
		echo "shim/$f: in no layer (add it to shim_layers.sh and shim/README.md)"
		bad=1
		continue
	fi
	while IFS= read -r inc; do
		h=${inc#shim/}
		theirs=$(layer_of "$h")
		if [ -z "$theirs" ]; then
			echo "shim/$f: includes shim/$h, which is in no layer"
			bad=1
		elif [ "$theirs" -gt "$mine" ]; then
			echo "shim/$f: includes shim/$h: the ${names[$theirs]} layer is above the ${names[$mine]} layer"
			bad=1
		fi
	done < <(sed -n 's|^[[:space:]]*#[[:space:]]*include[[:space:]]*"\(shim/[^"]*\)".*|\1|p' "$path")
done
exit $bad
