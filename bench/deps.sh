#!/usr/bin/env bash
# bench/deps.sh: kiln's dependency layers against `pip install --target` plus `tar | gzip`, side by side.
#
#   bash bench/deps.sh                         # 512 MiB of wheels, base made with scripts/debian-base.sh
#   BENCH_BASE=/path/to/layout bash bench/deps.sh
#
# Environment: BENCH_REPS (default 3), BENCH_DIR (parent of the work directory, default bench/work),
# BENCH_CACHE (where the fixture wheels are kept between runs, default bench/cache), BENCH_BASE (an OCI
# layout tagged "bookworm" with python3 and pip, default one made by scripts/debian-base.sh under
# ${KILN_TEST_CACHE:-/var/cache/kiln-test}/bases/debian-python), BENCH_DEPS_SCALE (percent of the
# fixture's sizes, default 100; below 100 the big wheels no longer reach 64 MiB: for trying the script
# only), BENCH_PYTHON (the interpreter whose pip makes the wheels and runs the baseline, default
# /usr/bin/python3), KILN_BUILD / KILN as for bench/build.sh. The work directory is removed at the end.
#
# Prints a Markdown table on stdout; progress and the raw runs go to stderr. The goals are checked for
# information only: the script exits 0 unless a command fails. When the kiln measured makes no dependency
# layers yet, the table has the baseline only and says so.
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
reps=${BENCH_REPS:-3}
scale=${BENCH_DEPS_SCALE:-100}
python=${BENCH_PYTHON:-/usr/bin/python3}
cache=${BENCH_CACHE:-$here/cache}
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

need_posint "$reps" BENCH_REPS
need_posint "$scale" BENCH_DEPS_SCALE
[[ -n ${EPOCHREALTIME:-} ]] || die "needs bash 5 (EPOCHREALTIME)"
for tool in tar gzip du awk sort; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done
"$python" -m pip --version >/dev/null 2>&1 || die "$python has no pip (BENCH_PYTHON)"
"$python" -c 'import setuptools, wheel' 2>/dev/null || die "$python lacks setuptools or wheel (to make the fixture wheels)"

need_kiln
make_work deps
trap_signals
trap remove_work EXIT
private_kiln
export XDG_CACHE_HOME=$work/xdg

# ---------------------------------------------------------------- the fixture wheels (made once, cached)
# name:MiB installed (1 GiB in all; gzip and the wheels' deflate halve it, so about 512 MiB of wheels). Three
# of 64 MiB or more (each its own layer), six small ones, and bench-tiny in one version per round plus one
# (the small requirement that changes).
fixture=(bench-big-a:384 bench-big-b:256 bench-big-c:192 bench-small-1:32 bench-small-2:32 bench-small-3:32
    bench-small-4:32 bench-small-5:32 bench-small-6:32)
wheels=$cache/deps-wheels-$scale
stamp="deps-v2 scale $scale ${fixture[*]} tiny 1.0-1.$reps $("$python" -m pip --version | cut -d' ' -f1-2)"
# make_wheel NAME VERSION MIB: a package whose module holds MIB MiB of data (half pseudo-random, half a
# repeated line, so that gzip halves it as it roughly does real wheels' libraries), built by `pip wheel`.
make_wheel() {
    local name=$1 version=$2 mib=$3 src mod
    mod=${name//-/_}
    src=$work/src/$name-$version
    mkdir -p "$src/$mod"
    cat >"$src/pyproject.toml" <<EOF
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "$name"
version = "$version"

[tool.setuptools]
packages = ["$mod"]

[tool.setuptools.package-data]
$mod = ["*.bin"]
EOF
    printf '__version__ = "%s"\n' "$version" >"$src/$mod/__init__.py"
    "$python" - "$src/$mod/data.bin" "$mib" "$name" "$scale" <<'PY'
import random, sys
path, mib, seed, scale = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
rnd = random.Random(seed)
line = (f"{seed} fixture data, compressible half\n" * 20000).encode()[: 1 << 19]
with open(path, "wb") as f:
    for _ in range(mib * scale // 100):
        f.write(rnd.randbytes(1 << 19))
        f.write(line)
PY
    "$python" -m pip wheel -q --no-deps --no-build-isolation --no-index --disable-pip-version-check \
        -w "$wheels" "$src" >&2
}
if [[ $(cat "$wheels/.stamp" 2>/dev/null) != "$stamp" ]]; then
    say "making the fixture wheels in $wheels (pip wheel; once: they are kept for the next runs)"
    rm -rf "$wheels"
    mkdir -p "$wheels"
    for f in "${fixture[@]}"; do make_wheel "${f%%:*}" 1.0 "${f##*:}"; done
    for ((v = 0; v <= reps; v++)); do make_wheel bench-tiny "1.$v" 0; done
    rm -rf "$work/src"
    echo "$stamp" >"$wheels/.stamp"
fi
wheel_bytes=$(du -cb "$wheels"/*.whl | tail -n 1 | cut -f1)
nwheels=${#fixture[@]}
say "wheels: $((nwheels + 1)) in one requirement set, $((wheel_bytes >> 20)) MiB in $wheels (bench-tiny in $((reps + 1)) versions)"

# requirements FILE TINY_VERSION: the requirement set, from the local wheels only.
requirements() {
    {
        echo "--no-index"
        echo "--find-links $wheels"
        for f in "${fixture[@]}"; do echo "${f%%:*}==1.0"; done
        echo "bench-tiny==$2"
    } >"$1"
}

runs=$work/runs
mkdir -p "$runs"

# ---------------------------------------------------------------- the baseline: pip install --target, tar | gzip
requirements "$work/base-req.txt" 1.0
pip_target() {
    rm -rf "$work/target"
    "$python" -m pip install -q --disable-pip-version-check --no-cache-dir --target "$work/target" \
        -r "$work/base-req.txt" >&2
}
tar_gzip() { tar -C "$work/target" -c . | gzip >"$work/target.tar.gz"; }
t_pip=() t_tar=() t_base=()
for ((r = 1; r <= reps; r++)); do
    timeit pip_target
    t_pip+=("$T")
    timeit tar_gzip
    t_tar+=("$T")
    t_base+=("$(awk -v a="${t_pip[-1]}" -v b="$T" 'BEGIN { printf "%.3f", a + b }')")
    say "round $r: pip install --target ${t_pip[-1]}s, tar | gzip ${T}s (others ${OTHER}% CPU)"
done
installed=$(du -sb "$work/target" | cut -f1)
gz=$(stat -c %s "$work/target.tar.gz")
rm -rf "$work/target" "$work/target.tar.gz"

# ---------------------------------------------------------------- kiln
if [[ -n ${BENCH_BASE:-} ]]; then
    base_dir=$BENCH_BASE
else
    base_dir=${KILN_TEST_CACHE:-/var/cache/kiln-test}/bases/debian-python
    say "the Debian base: bash scripts/debian-base.sh $base_dir (made once)"
    bash "$root/scripts/debian-base.sh" "$base_dir" >&2
fi
[[ -f $base_dir/index.json ]] || die "BENCH_BASE=$base_dir is not an OCI layout"
proj=$work/model
mkdir -p "$proj"
cat >"$proj/kiln.yaml" <<EOF
build:
  python_version: "3.11"
  python_requirements: requirements.txt
base: oci:$base_dir:bookworm
run: predict.py:Predictor
EOF
cat >"$proj/predict.py" <<'EOF'
from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self) -> str:
        import bench_tiny

        return bench_tiny.__version__
EOF
requirements "$proj/requirements.txt" 1.0
home=$work/home
kbuild() { KILN_HOME=$home "$kiln" build "$proj" -t bench/deps:latest --json --progress quiet >"$1" 2>"$1.err"; }
# dep_digests REPORT: the digests of the report's dependency layers, one a line.
dep_digests() { "$python" -c 'import json,sys; print("\n".join(l["digest"] for l in json.load(open(sys.argv[1]))["layers"] if l["kind"] == "dependencies"))' "$1"; }

kiln_ok=1 why=
rm -rf "$home"
if ! kbuild "$runs/probe.json"; then
    kiln_ok=0 why="kiln build failed: $(tail -n 2 "$runs/probe.json.err" | tr '\n' ' ')"
elif [[ -z $(dep_digests "$runs/probe.json") ]]; then
    kiln_ok=0 why="this kiln makes no dependency layers (python_requirements not installed): $(grep -m1 -i warning "$runs/probe.json.err" || echo "no warning")"
fi
t_full=() t_same=() t_change=() changed=()
if ((kiln_ok)); then
    for ((r = 1; r <= reps; r++)); do
        rm -rf "$home" "$XDG_CACHE_HOME"
        requirements "$proj/requirements.txt" 1.0
        timeit kbuild "$runs/full$r.json"
        t_full+=("$T")
        say "round $r: kiln build, fresh store ${T}s (others ${OTHER}% CPU)"
    done
    for ((r = 1; r <= reps; r++)); do
        timeit kbuild "$runs/same$r.json"
        t_same+=("$T")
        say "rebuild $r, nothing changed: ${T}s"
    done
    prev=$runs/same$reps.json
    for ((r = 1; r <= reps; r++)); do
        requirements "$proj/requirements.txt" "1.$r"
        timeit kbuild "$runs/change$r.json"
        t_change+=("$T")
        changed+=("$(comm -13 <(dep_digests "$prev" | sort) <(dep_digests "$runs/change$r.json" | sort) | wc -l)")
        prev=$runs/change$r.json
        say "rebuild $r, bench-tiny 1.$((r - 1)) -> 1.$r: ${T}s, ${changed[-1]} dependency layer(s) changed"
    done
    ndeps=$(dep_digests "$prev" | wc -l)
    layers=$("$python" -c 'import json,sys; print(", ".join("%.1f MiB" % (l["size"] / 1048576) for l in json.load(open(sys.argv[1]))["layers"] if l["kind"] == "dependencies"))' "$prev")
fi

# ---------------------------------------------------------------- the table
m_pip=$(median "${t_pip[@]}")
m_tar=$(median "${t_tar[@]}")
m_base=$(median "${t_base[@]}")
set_quiet_line
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
cat <<EOF

kiln dependency layers benchmark: $((nwheels + 1)) wheels made here with \`pip wheel\` ($(mib "$wheel_bytes") MiB in all, with bench-tiny's
versions; three of 64 MiB or more), installed from a local \`--find-links\` directory; median of $reps runs.
machine: $(machine_line)
kiln: $("$kiln" version), $kiln; base oci:$base_dir:bookworm; baseline pip: $("$python" -m pip --version | cut -d' ' -f1-2)

| figure | measured | goal | |
|---|---|---|---|
| baseline: \`pip install --target DIR -r requirements.txt\` | $(fmt "$m_pip") s ($(mib "$installed") MiB installed) | | |
| baseline: \`tar -C DIR -c . \| gzip\` | $(fmt "$m_tar") s ($(mib "$gz") MiB) | | |
| baseline, both (what a Dockerfile build costs at least) | $(fmt "$m_base") s | | |
EOF
if ((kiln_ok)); then
    m_full=$(median "${t_full[@]}")
    m_same=$(median "${t_same[@]}")
    m_change=$(median "${t_change[@]}")
    r_full=$(awk -v a="$m_full" -v b="$m_base" 'BEGIN { printf "%.2f", a / b }')
    p_change=$(awk -v a="$m_change" -v b="$m_full" 'BEGIN { printf "%.1f", 100 * a / b }')
    cat <<EOF
| kiln build, fresh store | $(fmt "$m_full") s (${r_full}x the baseline) | <= 1.2x | $(verdict "$r_full" "<=" 1.2) |
| kiln rebuild, nothing changed | $(fmt "$m_same") s | < 0.2 s | $(verdict "$m_same" "<" 0.2) |
| kiln build after one small requirement changed (bench-tiny) | $(fmt "$m_change") s (${p_change} % of the full build); dependency layers changed: $(maxof "${changed[@]}") of $ndeps | < 10 % | $(verdict "$p_change" "<" 10) |
| the image's dependency layers | $ndeps: $layers | | |

$quiet_line
runs (s): pip ${t_pip[*]} | tar+gzip ${t_tar[*]} | kiln ${t_full[*]} | rebuild ${t_same[*]} | change ${t_change[*]}
EOF
else
    cat <<EOF
| kiln | not measured: $why | | |

$quiet_line
runs (s): pip ${t_pip[*]} | tar+gzip ${t_tar[*]}
EOF
fi
