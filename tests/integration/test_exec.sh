#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# kiln exec: a command in the model's environment, as cog exec runs it: the project built, the command's
# output, standard input and exit status passed through (127 not found, 126 not executable, 128 + N for a
# signal), the environment from -e and from kiln.yaml, the working directory (the project on this machine;
# under bubblewrap the image's root with the project at /src, the image's packages importable), and bad
# command lines with their messages.
source "$(dirname "$0")/lib.sh"

P=$T_WORK/proj
make_project "$P" 'environment:
  - FROM_YAML=yaml
  - BOTH=yaml'
printf '#!/bin/sh\necho not executable\n' >"$P/script.sh"
chmod 644 "$P/script.sh"

t_case "a command's output, standard input and exit status; the project is the working directory (native)"
run_kiln exec "$P" -- sh -c 'echo "out $(cat)"; echo err >&2; pwd; exit 7' <<<"from stdin"
expect_rc 7
expect_eq "$OUT" "$(printf 'out from stdin\n%s' "$P")" "stdout"
expect_contains "$ERR" "err"
expect_contains "$ERR" "built proj:latest"
run_kiln exec "$P" --runtime native -- true
expect_rc 0
run_kiln exec "$P" -- sh -c 'kill -TERM $$'
expect_rc 143

t_case "-f FILE: the manifest the project is built with, as cog exec -f takes it"
mkdir -p "$T_WORK/alt"
cp "$P"/*.py "$T_WORK/alt/" 2>/dev/null
sed 's/FROM_YAML=yaml/FROM_YAML=alt/' "$P/kiln.yaml" >"$T_WORK/alt/other.yaml"
run_kiln exec "$T_WORK/alt" -f "$T_WORK/alt/other.yaml" -- sh -c 'echo "$FROM_YAML"'
expect_rc 0
expect_eq "$OUT" alt
cd "$T_WORK/alt" || exit 1
run_kiln exec -f other.yaml sh -c 'echo "$FROM_YAML"'
cd "$T_WORK" || exit 1
expect_rc 0
expect_eq "$OUT" alt "cog exec's line, -f relative to the current directory"

t_case "from a subdirectory of the project, without DIR: the project above is found, as Cog finds cog.yaml"
mkdir -p "$P/some/sub/dir"
cd "$P/some/sub/dir" || exit 1
run_kiln exec --runtime native echo hello world
expect_rc 0
expect_eq "$OUT" "hello world"
expect_contains "$ERR" "built proj:latest"
run_kiln exec --runtime native pwd
expect_eq "$OUT" "$P" "the project is the working directory"
mkdir -p "$T_WORK/nowhere"
cd "$T_WORK/nowhere" || exit 1
run_kiln exec --runtime native echo hi
expect_rc 1
expect_contains "$ERR" "no kiln.yaml or cog.yaml"
cd "$T_WORK" || exit 1
rm -rf "$P/some"

t_case "the environment: kiln.yaml's environment, -e (which wins), this machine's PATH (native)"
run_kiln exec "$P" -e FROM_E=e -e BOTH=e --env X=a=b -- sh -c 'echo "$FROM_YAML $FROM_E $BOTH $X"; command -v python3'
expect_rc 0
expect_eq "$OUT" "yaml e e a=b
$(command -v python3)" "variables"

t_case "cog exec's line: options, then the command, in the current directory; a project as first word"
OUT=$(cd "$P" && "$KILN" exec -e A=1 sh -c 'echo "$A $FROM_YAML"; pwd' 2>"$T_WORK/err")
RC=$?
ERR=$(cat "$T_WORK/err")
expect_rc 0
expect_eq "$OUT" "1 yaml
$P" "output"
run_kiln exec "$P" -e A=2 sh -c 'echo "$FROM_YAML $A" -e'
expect_rc 0
expect_eq "$OUT" "yaml 2 -e" "a project, its options, then the command, without --"
run_kiln exec -q "$P" -- echo a -- b
expect_eq "$OUT" "a -- b" "a command with a word -- of its own, after kiln's --"
run_kiln exec -q -e A=1 --runtime native "$P" echo a -- --b
expect_eq "$OUT" "a -- --b" "cog exec's line with a word -- of the command's"
run_kiln exec -q -e A=1 "$P" -e B=2 -- sh -c 'echo $A$B'
expect_eq "$OUT" "12" "options on both sides of the project, then --"
run_kiln exec -q "$P" echo --runtime native
expect_eq "$OUT" "--runtime native" "words after the command are the command's"

t_case "a command not found exits 127, one not executable 126, with their messages (native)"
run_kiln exec "$P" -- kiln-no-such-command
expect_rc 127
expect_contains "$ERR" "kiln: error: cannot run 'kiln-no-such-command': executable file not found in \$PATH"
run_kiln exec "$P" -- ./script.sh
expect_rc 126
expect_contains "$ERR" "kiln: error: cannot run './script.sh': permission denied"
run_kiln exec "$P" -- ./missing.sh
expect_rc 127
expect_contains "$ERR" "cannot run './missing.sh': no such file or directory"

t_case "kiln exec --help and kiln help exec print the synopsis; kiln --help lists exec"
run_kiln exec --help
expect_rc 0
expect_contains "$OUT" "usage: kiln exec [DIR | REF] [-e NAME=VALUE]... [--gpus G] [--runtime auto|native|bwrap] -- COMMAND [ARG...]"
expect_contains "$OUT" "--gpus G"
A=$OUT
run_kiln help exec
expect_eq "$OUT" "$A" "kiln help exec"
run_kiln --help
expect_contains "$OUT" "  exec       run a command in the model's environment (cog exec)"

# signals PROJECT READY RUNTIME: Ctrl-C (SIGINT to kiln's process group, as a terminal sends it) reaches a
# command that handles it and lives on, whose own status is kiln's; SIGTERM sent to kiln ends the command.
# The command writes READY (a path in the project) when it runs.
signals() {
	local proj=$1 ready=$2 runtime=$3 kp
	rm -f "$proj/ready"
	setsid "$KILN" -q exec "$proj" --runtime "$runtime" -- python3 -c "
import sys, time
open('$ready', 'w').close()
try:
    time.sleep(60)
except KeyboardInterrupt:
    print('interrupted', flush=True)
time.sleep(0.5)
print('still running', flush=True)
sys.exit(5)" >"$T_WORK/sig.out" 2>&1 &
	kp=$!
	for _ in $(seq 100); do [ -e "$proj/ready" ] && break; sleep 0.1; done
	kill -INT -- "-$kp"
	wait "$kp"
	RC=$?
	expect_rc 5
	expect_eq "$(cat "$T_WORK/sig.out")" "$(printf 'interrupted\nstill running')" "the command's output after Ctrl-C"
	rm -f "$proj/ready"
	setsid "$KILN" -q exec "$proj" --runtime "$runtime" -- sh -c "touch '$ready'; exec sleep 60" &
	kp=$!
	for _ in $(seq 100); do [ -e "$proj/ready" ] && break; sleep 0.1; done
	kill -TERM "$kp"
	wait "$kp"
	RC=$?
	expect_rc 143
	# (a zombie of the bubblewrap kiln probes with is this machine's init's to reap)
	local left
	left=$(ps -o stat=,pid=,args= -s "$kp" | grep -v '^Z')
	[ -z "$left" ] || t_fail "processes left in kiln's session: $left"
	rm -f "$proj/ready"
}

t_case "Ctrl-C reaches the command, which may live on; SIGTERM to kiln ends it (native)"
signals "$P" "$P/ready" native

t_case "bad command lines: each refused with its message, nothing run"
bad() { # bad WANT ARGS...: exit 2, WANT in the message
	local want=$1
	shift
	run_kiln exec "$@"
	expect_rc 2
	expect_contains "$ERR" "$want"
	expect_not_contains "$ERR" "built "
}
bad "kiln exec: missing COMMAND after the project '$P'" "$P"
bad "kiln exec: missing COMMAND after the project '$P'" "$P" -e A=1
bad "kiln exec: missing COMMAND" -e A=1
bad "kiln exec: missing COMMAND after '--'" "$P" --
bad "kiln exec: -e NOVALUE: give NAME=VALUE" "$P" -e NOVALUE -- true
bad "kiln exec: -e =x: give NAME=VALUE" -e =x -- true
bad "kiln exec: -p 'http': not a port number" -p http -- true
bad "kiln exec: --gpus 'some': give all, a count or device=I[,J...]" --gpus some -- true
bad "kiln exec: --gpus 'device=a': give all, a count or device=I[,J...]" --gpus device=a -- true
bad "kiln exec: --runtime: 'docker' is not auto, native or bwrap" "$P" --runtime docker -- true
bad "kiln exec: unknown option '--use-cuda-base-image'" --use-cuda-base-image false -- true
bad "kiln exec: option '--env' needs a value" "$P" --env
bad "kiln exec: option '-e' needs a value" -e
run_kiln exec "$T_WORK/nothing-here" -- true
expect_rc 1
expect_contains "$ERR" "kiln: error: '$T_WORK/nothing-here' is neither a directory nor an image reference"
mkdir -p "$T_WORK/badyaml"
printf 'run: p.py:P\nbuild:\n  pyhton_version: "3.11"\n' >"$T_WORK/badyaml/kiln.yaml"
cp "$P/p.py" "$T_WORK/badyaml/"
run_kiln exec "$T_WORK/badyaml" -- true
expect_rc 1
expect_contains "$ERR" "cannot build '$T_WORK/badyaml'"
expect_contains "$ERR" "kiln.yaml:3:3"

t_case "-p is a warning (the command shares this machine's network); --gpus sets the devices the command sees"
run_kiln exec "$P" -p 8888 --gpus 2 -- sh -c 'echo "$CUDA_VISIBLE_DEVICES $NVIDIA_VISIBLE_DEVICES"'
expect_rc 0
expect_contains "$ERR" "kiln: warning: -p 8888: kiln exec runs the command in this machine's network (no Docker): port 8888 is this machine's already, nothing is published"
expect_eq "$OUT" "0,1 0,1" "--gpus 2"
run_kiln exec "$P" --gpus '"device=1,3"' -- sh -c 'echo "$CUDA_VISIBLE_DEVICES"'
expect_eq "$OUT" "1,3" "--gpus device="
run_kiln exec "$P" --gpus all -- sh -c 'echo "${CUDA_VISIBLE_DEVICES-unset}"'
expect_eq "$OUT" "unset" "--gpus all"

# Under bubblewrap: a Debian base whose image gets a package installed by pip.
command -v bwrap >/dev/null && bwrap --ro-bind / / --unshare-pid --dev /dev true 2>/dev/null ||
	{ echo "skipped the bwrap cases: bwrap cannot run here"; t_finish; exit $?; }
debian_base || { t_fail "no Debian base"; t_finish; exit 1; }
B=$T_WORK/onbase
mkdir -p "$B/w"
FIXP=$KILN_SOURCE_DIR/tests/fixtures/pip
python3 "$FIXP/mkwheel.py" kilnpure 1.0.0 py3-none-any "$FIXP/kilnpure" "$B/w" >/dev/null
printf 'class P:\n    def predict(self) -> str:\n        return "ok"\n' >"$B/p.py"
printf 'base: oci:%s:bookworm\nbuild:\n  python_packages: ["kilnpure==1.0.0"]\nenvironment:\n  - FROM_YAML=yaml\nrun: p.py:P\n' "$DEBIAN_BASE" >"$B/kiln.yaml"
export PIP_FIND_LINKS=$B/w PIP_NO_INDEX=1

t_case "bwrap: the image's Python imports the package pip installed; the project at /src is the working directory"
run_kiln exec "$B" --runtime bwrap -e FROM_E=e -- python3 -c 'import kilnpure, os, sys; print(kilnpure.greet("x"), os.getcwd(), os.environ["FROM_YAML"], os.environ["FROM_E"], sys.version_info[:2])'
expect_rc 0
expect_eq "$OUT" "hello x /src yaml e (3, 11)" "output"
touch "$B/after-build"
run_kiln exec -q "$B" --runtime bwrap -- sh -c 'ls /src; echo made >/src/made; echo layer >/etc/x && cat /etc/x'
expect_rc 0
expect_contains "$OUT" "after-build"
expect_eq "$(cat "$B/made" 2>/dev/null)" "made" "a file written in /src is in the project"

t_case "bwrap: the image's root is writable for the command, as a container's layer, and thrown away after it"
expect_contains "$OUT" "layer" "a file written in /etc, read back"
run_kiln exec -q "$B" --runtime bwrap -- sh -c 'test -e /etc/x || echo gone; python3 -m pip --version >/dev/null && echo > /usr/lib/python3/dist-packages/kiln_probe.py && python3 -c "import kiln_probe; print(\"imported\")"'
expect_rc 0
expect_eq "$OUT" "$(printf 'gone\nimported')" "the next command sees the image as it was, and may install into it"
expect_eq "$(find "$KILN_HOME/run" -name x -path '*/etc/x' -o -name kiln_probe.py | wc -l)" 0 "the unpacked root is untouched"
expect_eq "$(find "$KILN_HOME/tmp" -mindepth 1 -maxdepth 1 -name '*-exec-*' | wc -l)" 0 "the layer is removed"
KILN_HOME="$T_WORK/home,comma" run_kiln exec "$B" --runtime bwrap -- sh -c 'touch /etc/x'
expect_rc 1
expect_contains "$ERR" "warning: the image's root is read-only for this command (its writable layer: the store's path"
run_kiln exec -q "$B" --runtime bwrap -- sh -c 'kill -TERM $$'
expect_rc 143

t_case "bwrap: Ctrl-C reaches the command, not bubblewrap, which lives on; SIGTERM to kiln ends it"
signals "$B" /src/ready bwrap

t_case "bwrap: not found (127) and not executable (126) in the image, as its PATH and root resolve them"
run_kiln exec "$B" --runtime bwrap -- kiln-no-such-command
expect_rc 127
expect_contains "$ERR" "kiln: error: cannot run 'kiln-no-such-command': executable file not found in the image's \$PATH"
run_kiln exec -q "$B" --runtime bwrap -- p.py
expect_rc 127
run_kiln exec -q "$B" --runtime bwrap -- /bin/kiln-nothing
expect_rc 127
expect_contains "$ERR" "kiln: error: cannot run '/bin/kiln-nothing': no such file or directory"
run_kiln exec -q "$B" --runtime bwrap -- ./p.py
expect_rc 126
expect_contains "$ERR" "kiln: error: cannot run './p.py': permission denied"
run_kiln exec -q "$B" --runtime bwrap -- /etc
expect_rc 126
run_kiln exec -q "$B" --runtime bwrap -- /bin/true # /bin is a link to usr/bin in the image
expect_rc 0

t_case "an image reference: the command in the image's own /src"
run_kiln exec -q onbase:latest -- sh -c 'pwd; ls /src'
expect_rc 0
expect_contains "$OUT" "/src"
expect_contains "$OUT" "p.py"
expect_store_consistent

t_finish
