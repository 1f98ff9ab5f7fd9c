#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The build steps as an ordinary user: bubblewrap in an unprivileged user namespace, where the user is
# root; pip and build.run there, and what they leave owned by root in the image's layers.
source "$(dirname "$0")/lib.sh"

command -v bwrap >/dev/null || { echo "skipped: no bwrap"; exit 0; }
[ "$(id -u)" = 0 ] || { echo "skipped: making the ordinary user needs root"; exit 0; }
BASE=$KILN_TEST_CACHE/bases/debian-python
[ -f "$BASE/index.json" ] || bash "$KILN_SOURCE_DIR/scripts/debian-base.sh" "$BASE" >/dev/null ||
	{ echo "skipped: no Debian base"; exit 0; }
NAME=kiln-it-user
id -u "$NAME" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$NAME" ||
	{ echo "cannot make the user $NAME"; exit 1; }
chmod 755 "$T_WORK"
U=$T_WORK/u
mkdir -p "$U/home"
# as_user CMD...: CMD as that user, with a store and a home of its own, in that home (kiln predict, as cog
# predict, wants a writable directory for its output); $OUT, $ERR, $RC as run_kiln
as_user() {
	OUT=$(cd "$U/home" && runuser -u "$NAME" -- env -i PATH="$PATH" HOME="$U/home" KILN_HOME="$U/store" LANG=C.UTF-8 \
		KILN_PYTHON_BASE=scratch "$@" 2>"$T_WORK/stderr")
	RC=$?
	ERR=$(cat "$T_WORK/stderr")
}
chown -R "$NAME" "$U"
as_user bwrap --unshare-user --uid 0 --gid 0 --ro-bind / / true
[ "$RC" = 0 ] || { echo "skipped: no unprivileged user namespaces here ($ERR)"; exit 0; }

cp -r "$BASE" "$U/base"
P=$U/project
mkdir -p "$P/wheels"
python3 "$KILN_SOURCE_DIR/tests/fixtures/pip/mkwheel.py" kilnpure 1.0.0 py3-none-any \
	"$KILN_SOURCE_DIR/tests/fixtures/pip/kilnpure" "$P/wheels" >/dev/null
printf -- '--find-links wheels\nkilnpure==1.0.0\n' >"$P/requirements.txt"
cat >"$P/predict.py" <<'EOF'
import kilnpure
from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self, name: str = "x") -> str:
        return kilnpure.greet(name) + " " + open("/opt/made.txt").read().strip()
EOF
cat >"$P/kiln.yaml" <<EOF
base: oci:$U/base:bookworm
build:
  python_requirements: requirements.txt
  run:
    - echo made >/opt/made.txt && chown 0:0 /opt/made.txt && rm /etc/issue.net
predict: predict.py:Predictor
EOF
chown -R "$NAME" "$U"

t_case "as an ordinary user: pip and build.run run in a user namespace, and the image answers under bubblewrap"
as_user "$KILN" --progress plain build "$P" -t userns:1
expect_rc 0
expect_contains "$ERR" "Successfully installed kilnpure-1.0.0"
expect_contains "$ERR" "build.run[0]: echo made"
as_user "$KILN" predict userns:1 --runtime bwrap -i name=user
expect_rc 0
expect_contains "$OUT" "hello user made"

t_case "the layers the user made: entries owned by root, the deletion an OCI whiteout"
as_user "$KILN" inspect userns:1 --json
expect_rc 0
RUNL=$(echo "$OUT" | json "[l['digest'] for l in j['layers'] if l['kind'] == 'dependencies'][-1]")
PIPL=$(echo "$OUT" | json "[l['digest'] for l in j['layers'] if l['kind'] == 'dependencies'][0]")
LIST=$(tar -tvzf "$U/store/blobs/sha256/${RUNL#sha256:}")
expect_contains "$LIST" "etc/.wh.issue.net"
expect_contains "$(echo "$LIST" | grep 'opt/made.txt')" " 0/0 "
expect_eq "$(tar -tvzf "$U/store/blobs/sha256/${PIPL#sha256:}" | awk '{print $2}' | sort -u)" "0/0" "owners in the pip layer"

t_case "kiln exec as that user: the image's root writable for the command (overlayfs in a user namespace), then as it was"
as_user "$KILN" exec -q userns:1 --runtime bwrap -- sh -c 'echo layer >/opt/made.txt && cat /opt/made.txt && id -u'
expect_rc 0
expect_eq "$OUT" "$(printf 'layer\n%s' "$(id -u "$NAME")")" "written, read back, as the user"
expect_not_contains "$ERR" "read-only"
as_user "$KILN" exec -q userns:1 --runtime bwrap -- cat /opt/made.txt
expect_eq "$OUT" made "the next command sees the image's own file"
expect_eq "$(ls -A "$U/store/tmp" | grep -c exec)" 0 "the layer is removed"

t_case "a rebuild as that user runs no step"
as_user "$KILN" --progress plain build "$P" -t userns:1
expect_rc 0
expect_not_contains "$ERR" "Successfully installed"
expect_contains "$ERR" "(cached)"

t_finish
