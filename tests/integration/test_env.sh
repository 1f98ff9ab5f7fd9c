#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The model's environment: system_packages from a local apt repository, build.run steps (writes, deletions
# as whiteouts, a secret mount) in a Debian base's own root under bubblewrap, the steps' layer cache, and
# bad input (a failing step, a missing package, a base without apt, a secret not given).
source "$(dirname "$0")/lib.sh"

for tool in bwrap umoci skopeo dpkg-deb apt-ftparchive mmdebstrap; do
	command -v "$tool" >/dev/null || { echo "skipped: $tool is not installed"; exit 0; }
done
bwrap --ro-bind / / --unshare-pid --dev /dev true 2>/dev/null || { echo "skipped: bwrap cannot run here"; exit 0; }

BASES=${KILN_TEST_CACHE:-/var/cache/kiln-test}/bases
bash "$KILN_SOURCE_DIR/scripts/debian-base.sh" "$BASES/debian-python" >/dev/null || { echo "cannot make the Debian base"; exit 1; }

# A local apt repository of one fixture package, served on loopback.
REPO=$T_WORK/repo
mkdir -p "$REPO"
cp -a "$KILN_SOURCE_DIR/tests/fixtures/deb/kiln-hello" "$T_WORK/pkg"
dpkg-deb --root-owner-group --build "$T_WORK/pkg" "$REPO/kiln-hello_1.0_all.deb" >/dev/null
(cd "$REPO" && apt-ftparchive packages . >Packages && apt-ftparchive release . >Release)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 --directory "$REPO" "$PORT" >/dev/null 2>&1 &
HTTP=$!
t_defer "kill $HTTP"
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$PORT/Packages" >/dev/null && break; sleep 0.1; done

# The test base: the Debian base whose apt knows only that repository (a layer added with umoci).
TB=$T_WORK/testbase
mkdir -p "$TB"
cp -al "$BASES/debian-python/blobs" "$TB/blobs"
cp "$BASES/debian-python/oci-layout" "$BASES/debian-python/index.json" "$TB/"
mkdir -p "$T_WORK/apt/etc/apt/sources.list.d"
echo "deb [trusted=yes] http://127.0.0.1:$PORT/ ./" >"$T_WORK/apt/etc/apt/sources.list"
# (umoci insert writes a tar without its end blocks, which GNU tar and libarchive refuse: a plain tar)
tar -C "$T_WORK/apt" --owner=0 --group=0 --mtime=@0 -cf "$T_WORK/apt.tar" etc
umoci raw add-layer --image "$TB:bookworm" "$T_WORK/apt.tar" >/dev/null || { echo "cannot make the test base"; exit 1; }

secret_value="kiln-test-secret-$RANDOM$RANDOM"
printf '%s\n' "$secret_value" >"$T_WORK/token"

P=$T_WORK/project
mkdir -p "$P"
cat >"$P/predict.py" <<'EOF'
import subprocess
from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self, text: str = "x") -> str:
        hello = subprocess.run(["kiln-hello"], capture_output=True, text=True, check=True).stdout.strip()
        made = open("/opt/made.txt").read().strip()
        return f"{hello} {made} {text}"
EOF
write_manifest() { # write_manifest RUN0
	cat >"$P/kiln.yaml" <<EOF
base: oci:$TB:bookworm
build:
  system_packages:
    - kiln-hello
  run:
    - $1
    - command: wc -c </run/secrets/token >/opt/token-size && cat /run/secrets/token
      mounts:
        - type: secret
          id: token
          target: /run/secrets/token
predict: predict.py:Predictor
EOF
}
write_manifest "echo made >/opt/made.txt && rm /etc/issue.net && rm -r /etc/apt/apt.conf.d"

# layers of the image REF in the store as "kind digest" lines
env_layers() { "$KILN" inspect "$1" --json | json '"\n".join(l["kind"] + " " + l["digest"] for l in j["layers"])'; }

t_case "system_packages and build.run become layers, and the image answers under bubblewrap"
run_kiln --progress plain build "$P" -t envtest:1 --secret id=token,src="$T_WORK/token"
expect_rc 0
expect_contains "$ERR" "step     system_packages: apt-get update -qq"
expect_contains "$ERR" "build.run[0]: echo made"
expect_not_contains "$ERR$OUT" "$secret_value"
expect_contains "$ERR" "  | ***"
L1=$(env_layers envtest:1)
expect_eq "$(echo "$L1" | grep -c '^dependencies ')" "3" "environment layers"
expect_eq "$(echo "$L1" | awk '{print $1}' | tr '\n' ' ')" "base base dependencies dependencies dependencies runtime code " "layer order"
run_kiln predict envtest:1 -i text=yes --runtime bwrap
expect_rc 0
expect_contains "$OUT" "hello from kiln-hello made yes"

t_case "the image is read back by skopeo and umoci: the deletions are whiteouts"
run_kiln build "$P" -t envtest:1 --output "oci:$T_WORK/out:1" --secret id=token,src="$T_WORK/token"
expect_rc 0
SK=$(skopeo inspect "oci:$T_WORK/out:1" 2>&1) || t_fail "skopeo inspect: $SK"
expect_eq "$(echo "$SK" | json 'len(j["Layers"])')" "7" "skopeo's layers"
CFG=$(skopeo inspect --config "oci:$T_WORK/out:1" 2>&1)
expect_contains "$(echo "$CFG" | json '[h["created_by"] for h in j["history"]]')" "RUN apt-get update -qq"
expect_contains "$(echo "$CFG" | json '[h["created_by"] for h in j["history"]]')" "RUN echo made >/opt/made.txt"
umoci unpack --image "$T_WORK/out:1" "$T_WORK/bundle" >/dev/null 2>&1 || t_fail "umoci unpack"
R=$T_WORK/bundle/rootfs
[ -x "$R/usr/bin/kiln-hello" ] || t_fail "kiln-hello is not installed in the image"
[ -f "$R/opt/made.txt" ] || t_fail "/opt/made.txt is missing"
[ ! -e "$R/etc/issue.net" ] || t_fail "/etc/issue.net was deleted by a step but is in the image"
[ ! -e "$R/etc/apt/apt.conf.d" ] || t_fail "a deleted directory is in the image"
[ -f "$R/etc/issue" ] || t_fail "/etc/issue should be untouched"
[ ! -e "$R/run/secrets" ] || t_fail "the secret's mount point is in the image"
[ "$(cat "$R/opt/token-size")" -gt 0 ] || t_fail "the secret was not mounted for its step"
ls "$R/var/lib/apt/lists" 2>/dev/null | grep . >/dev/null && t_fail "apt's lists are in the image"
wh=0
for b in "$KILN_HOME"/blobs/sha256/*; do
	tar tzf "$b" 2>/dev/null | grep '^etc/\.wh\.issue\.net$' >/dev/null && wh=1
	if zcat -f "$b" 2>/dev/null | grep -a "$secret_value" >/dev/null; then t_fail "the secret's value is in blob $b"; fi
done
expect_eq "$wh" "1" "a layer whites out /etc/issue.net"
grep -rq "$secret_value" "$KILN_HOME/cache" && t_fail "the secret's value is in the cache"
expect_store_consistent

t_case "the system_packages layer is the same from a fresh store (apt's and dpkg's logs left out)"
sleep 1 # the logs' timestamps would differ
KILN_HOME=$T_WORK/fresh-home run_kiln build "$P" -t envtest:fresh --secret id=token,src="$T_WORK/token"
expect_rc 0
expect_eq "$(KILN_HOME=$T_WORK/fresh-home env_layers envtest:fresh | sed -n 3p)" "$(echo "$L1" | sed -n 3p)" "the system_packages layer"
LOGS=$(tar -tzf "$T_WORK/fresh-home/blobs/sha256/$(echo "$L1" | sed -n 3p | sed 's/.*sha256://')")
expect_not_contains "$LOGS" "var/log/dpkg.log"
expect_not_contains "$LOGS" "var/log/apt/history.log"

t_case "a rebuild with nothing changed runs no step and reads nothing for the environment"
run_kiln --progress plain build "$P" -t envtest:2 --secret id=token,src="$T_WORK/token" --json
expect_rc 0
expect_not_contains "$ERR" "  | "
expect_contains "$ERR" "system_packages: apt-get update -qq"
expect_contains "$ERR" "(cached)"
expect_eq "$(echo "$OUT" | json 'sum(l["bytes_read"] for l in j["layers"] if l["kind"]=="dependencies")')" "0" "environment bytes read"
expect_eq "$(echo "$OUT" | json 'all(l["cached"] for l in j["layers"] if l["kind"]=="dependencies")')" "True" "environment layers cached"
expect_eq "$(env_layers envtest:2)" "$L1" "the layers"
[ -z "$(ls -A "$KILN_HOME/tmp")" ] || t_fail "a root was left in the store's tmp"

t_case "changing one run command changes only that layer and those above"
write_manifest "echo made >/opt/made.txt && rm /etc/issue.net && rm -r /etc/apt/apt.conf.d && touch /opt/more"
run_kiln --progress plain build "$P" -t envtest:3 --secret id=token,src="$T_WORK/token"
expect_rc 0
expect_contains "$ERR" "system_packages: apt-get update"
expect_contains "$ERR" "(cached)"
L3=$(env_layers envtest:3)
expect_eq "$(echo "$L3" | sed -n 3p)" "$(echo "$L1" | sed -n 3p)" "the system_packages layer"
expect_ne "$(echo "$L3" | sed -n 4p)" "$(echo "$L1" | sed -n 4p)" "the changed step's layer"
# the step above ran again (its layer holds the same bytes, so its digest may be the same)
expect_contains "$ERR" "step     build.run[1]: wc -c </run/secrets/token >/opt/token-size && cat /run/secrets/token
"
expect_not_contains "$ERR" "cat /run/secrets/token (cached)"
write_manifest "echo made >/opt/made.txt && rm /etc/issue.net && rm -r /etc/apt/apt.conf.d"

# after a failed build: no temporary root or file in the store, and the older image still reads
expect_clean_after_failure() {
	expect_store_consistent
	ls -A "$KILN_HOME/roots" 2>/dev/null | grep '^\.' >/dev/null && t_fail "a half-made root was left: $(ls -A "$KILN_HOME/roots")"
	run_kiln inspect envtest:1
	expect_rc 0
	skopeo inspect "oci:$KILN_HOME:docker.io/library/envtest:1" >/dev/null 2>&1 || t_fail "skopeo cannot read envtest:1"
}

t_case "a run step that exits non-zero: its status and the tail of its output, after the warnings"
B=$T_WORK/bad
mkdir -p "$B"
cp "$P/predict.py" "$B/"
printf 'base: oci:%s:bookworm\nbuild:\n  run:\n    - echo first\n    - echo "going wrong" && exit 3\n  fast: true\npredict: predict.py:Predictor\n' "$TB" >"$B/kiln.yaml"
run_kiln build "$B" -t bad:1
expect_rc 1
expect_contains "$ERR" "kiln.yaml:5:7: build.run[1]: 'echo \"going wrong\" && exit 3' exited with status 3"
expect_contains "$ERR" "going wrong"
expect_contains "$ERR" "warning: $B/kiln.yaml:6:3: build.fast:" # said before the error, not lost
expect_clean_after_failure
run_kiln inspect bad:1
expect_rc 1

t_case "an apt package that does not exist"
printf 'base: oci:%s:bookworm\nbuild:\n  system_packages:\n    - kiln-no-such-package\npredict: predict.py:Predictor\n' "$TB" >"$B/kiln.yaml"
run_kiln build "$B" -t bad:2
expect_rc 1
expect_contains "$ERR" "kiln.yaml:4:7: system_packages: 'apt-get update"
expect_contains "$ERR" "exited with status 100"
expect_contains "$ERR" "kiln-no-such-package"
expect_clean_after_failure

t_case "a base without apt: system_packages needs a Debian or Ubuntu base"
mkdir -p "$T_WORK/bb/bin"
cp /bin/busybox "$T_WORK/bb/bin/busybox"
ln -s busybox "$T_WORK/bb/bin/sh"
umoci init --layout "$T_WORK/bbase" && umoci new --image "$T_WORK/bbase:bb" &&
	umoci insert --image "$T_WORK/bbase:bb" "$T_WORK/bb/bin" /bin >/dev/null || t_fail "cannot make the busybox base"
printf 'base: oci:%s:bb\nbuild:\n  system_packages:\n    - curl\npredict: predict.py:Predictor\n' "$T_WORK/bbase" >"$B/kiln.yaml"
run_kiln build "$B" -t bad:3
expect_rc 1
expect_contains "$ERR" "kiln.yaml:4:7: system_packages: base 'oci:$T_WORK/bbase:bb' has no apt-get: system_packages needs a Debian or Ubuntu base"
expect_clean_after_failure

t_case "a secret mount whose secret was not given"
run_kiln build "$P" -t bad:4
expect_rc 1
expect_contains "$ERR" "kiln.yaml:7:16: build.run[1]: the secret 'token' was not given (kiln build --secret id=token,src=FILE)"
expect_clean_after_failure
run_kiln build "$P" -t bad:4 --secret id=token,env=KILN_NO_SUCH_VARIABLE
expect_rc 2
expect_contains "$ERR" "the environment variable 'KILN_NO_SUCH_VARIABLE' is not set"

t_case "a secret given by env= is mounted and its value kept out of the output"
export KILN_TEST_TOKEN=$secret_value
run_kiln --progress plain build "$P" -t envtest:5 --secret id=token,env=KILN_TEST_TOKEN
expect_rc 0
expect_not_contains "$ERR$OUT" "$secret_value"
ls /tmp/kiln-secret-* >/dev/null 2>&1 && t_fail "the secret's temporary file was left"

t_case "system_packages, then pip alone after a changed requirement, in the root kept from the first build; prune --all removes the roots"
S=$T_WORK/sp
mkdir -p "$S/w" "$S/pure2/kilnpure"
FIXP=$KILN_SOURCE_DIR/tests/fixtures/pip
python3 "$FIXP/mkwheel.py" kilnpure 1.0.0 py3-none-any "$FIXP/kilnpure" "$S/w" >/dev/null
sed 's/hello/hi/' "$FIXP/kilnpure/kilnpure/__init__.py" >"$S/pure2/kilnpure/__init__.py"
python3 "$FIXP/mkwheel.py" kilnpure 1.0.1 py3-none-any "$S/pure2" "$S/w" >/dev/null
cat >"$S/predict.py" <<'EOF'
import subprocess
import kilnpure
from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self, text: str = "x") -> str:
        hello = subprocess.run(["kiln-hello"], capture_output=True, text=True, check=True).stdout.strip()
        return f"{hello}, {kilnpure.greet(text)}"
EOF
sp_manifest() {
	printf 'base: oci:%s:bookworm\nbuild:\n  system_packages: [kiln-hello]\n  python_packages: ["kilnpure==%s"]\npredict: predict.py:Predictor\n' "$TB" "$1" >"$S/kiln.yaml"
}
sp_manifest 1.0.0
export PIP_FIND_LINKS=$S/w PIP_NO_INDEX=1
ROOTS0=$(ls "$KILN_HOME/roots" | grep -vc "\.view$")
run_kiln --progress plain build "$S" -t sp:1
expect_rc 0
expect_eq "$(ls "$KILN_HOME/roots" | grep -vc "\.view$")" "$((ROOTS0 + 1))" "roots kept (the root after system_packages)"
run_kiln predict sp:1 -i text=yes --runtime bwrap
expect_contains "$OUT" "hello from kiln-hello, hello yes"
sp_manifest 1.0.1
run_kiln --progress plain build "$S" -t sp:2
expect_rc 0
expect_contains "$ERR" "system_packages: apt-get update -qq"
expect_contains "$ERR" "(cached)"
expect_contains "$ERR" "Installing collected packages: kilnpure"
expect_eq "$(ls "$KILN_HOME/roots" | grep -vc "\.view$")" "$((ROOTS0 + 1))" "roots after the change"
expect_eq "$(ls -A "$KILN_HOME/tmp" | wc -l)" 0 "files left in tmp/"
expect_eq "$(find "$KILN_HOME/roots" -mindepth 2 -maxdepth 2 -not -path "*.view/*" -newer "$S/kiln.yaml" | wc -l)" 0 "paths made in a kept root by the second build"
run_kiln predict sp:2 -i text=yes --runtime bwrap
expect_contains "$OUT" "hello from kiln-hello, hi yes"
run_kiln prune --all --json
expect_rc 0
expect_eq "$(echo "$OUT" | json 'j["roots"] >= 4')" "True" "roots/ entries and pip-cache/ removed by --all ($OUT)"
expect_eq "$(ls -A "$KILN_HOME/roots" | wc -l)" 0 "roots/ after prune --all"
[ -e "$KILN_HOME/pip-cache" ] && t_fail "pip-cache/ left by prune --all"
sp_manifest 1.0.0
run_kiln build "$S" -t sp:3
expect_rc 0
run_kiln predict sp:3 -i text=again --runtime bwrap
expect_contains "$OUT" "hello from kiln-hello, hello again"
unset PIP_FIND_LINKS PIP_NO_INDEX

t_finish
