#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Hostile images, made here from crafted tar layers and pushed to a loopback registry, run with
# `kiln predict --runtime native`: symbolic links of one layer that another layer's weights would be
# linked through (absolute, relative with '..', below or above the weights), a whiteout through a link,
# entries named with '..' or an absolute path, device nodes, setuid files, root and foreign ownership, a
# gzip bomb and a huge sparse file. Whatever the image, nothing
# outside the store is written, changed or planted, and the store's directories stay this user's alone.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/registry.sh"

cd "$T_WORK" || exit 1
registry_start plain || exit 1

# mkimage OUT NAME SPEC: an OCI layout in OUT holding the image NAME described by the JSON SPEC: a list of
# layers {"kind": "weights"|"code"|..., "gzip": bool, "entries": [...]}, each entry {"t": "f"|"d"|"l"|"h"|
# "c" (a character device)|"sparse", "name", "data", "target", "mode", "uid", "zeros" (a file of that many zero bytes),
# "realsize" (sparse: its apparent size, one byte of data at the end), "linkdata" (a hard link carrying
# that data)}. The config makes it look like an image kiln built: its shim as the Entrypoint.
cat >"$T_WORK/mkimage.py" <<'EOF'
import gzip, hashlib, io, json, os, sys, tarfile
out, name, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
os.makedirs(out + "/blobs/sha256", exist_ok=True)

class Tee:
    """Write to F while hashing what goes through (the layer's diff_id)."""
    def __init__(self, f):
        self.f, self.h = f, hashlib.sha256()
    def write(self, b):
        self.h.update(b)
        return self.f.write(b)
    def tell(self):
        return 0

class Zeros:
    chunk = bytes(1 << 20)
    def read(self, n):
        return self.chunk[:n] if n < len(self.chunk) else self.chunk

def blob(data):
    d = hashlib.sha256(data).hexdigest()
    with open(f"{out}/blobs/sha256/{d}", "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + d, "size": len(data)}

def entry(t, e):
    ti = tarfile.TarInfo(e["name"])
    ti.mtime, ti.uid, ti.gid = 1234567890, e.get("uid", 0), e.get("uid", 0)
    kind = e["t"]
    if kind == "d":
        ti.type, ti.mode = tarfile.DIRTYPE, e.get("mode", 0o755)
        t.addfile(ti)
    elif kind == "l":
        ti.type, ti.linkname = tarfile.SYMTYPE, e["target"]
        t.addfile(ti)
    elif kind == "h":
        ti.type, ti.linkname, ti.mode = tarfile.LNKTYPE, e["target"], e.get("mode", 0o644)
        data = e.get("linkdata", "").encode()
        ti.size = len(data)
        if data:  # pax: a hard link may carry data; tarfile writes what it is given
            ti.pax_headers = {"comment": "hard link with data"}
        t.addfile(ti, io.BytesIO(data) if data else None)
    elif kind == "c":  # a character device (1, 3: /dev/null's numbers)
        ti.type, ti.devmajor, ti.devminor, ti.mode = tarfile.CHRTYPE, 1, 3, 0o666
        t.addfile(ti)
    elif kind == "sparse":  # GNU sparse 1.0 in pax headers: a map, then the one byte of data
        real = e["realsize"]
        ti.name = "GNUSparseFile.0/" + e["name"]
        ti.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0",
                          "GNU.sparse.name": e["name"], "GNU.sparse.realsize": str(real)}
        body = ("1\n%d\n1\n" % (real - 1)).encode().ljust(512, b"\0") + b"x"
        ti.size, ti.mode = len(body), 0o644
        t.addfile(ti, io.BytesIO(body))
    elif "zeros" in e:
        ti.size, ti.mode = e["zeros"], e.get("mode", 0o644)
        t.addfile(ti, Zeros())
    else:
        data = e.get("data", "").encode()
        ti.size, ti.mode = len(data), e.get("mode", 0o644)
        t.addfile(ti, io.BytesIO(data))

layers, diffs = [], []
for n, l in enumerate(spec):
    raw = io.BytesIO()
    sink = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=9) if l.get("gzip") else raw
    tee = Tee(sink)
    with tarfile.open(fileobj=tee, mode="w", format=tarfile.PAX_FORMAT, copybufsize=1 << 20) as t:
        for e in l["entries"]:
            entry(t, e)
    if l.get("gzip"):
        sink.close()
    desc = blob(raw.getvalue())
    desc["mediaType"] = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if l.get("gzip") else "")
    desc["annotations"] = {"dev.kiln.layer.kind": l["kind"], "org.opencontainers.image.title": "layer%d" % n}
    layers.append(desc)
    diffs.append("sha256:" + tee.h.hexdigest())
config = blob(json.dumps({"architecture": "amd64", "os": "linux",
                          "config": {"Entrypoint": ["/.kiln/bin/kiln-shim"], "WorkingDir": "/src"},
                          "rootfs": {"type": "layers", "diff_ids": diffs}}).encode())
config["mediaType"] = "application/vnd.oci.image.config.v1+json"
manifest = blob(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                            "config": config, "layers": layers}).encode())
manifest["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
manifest["annotations"] = {"org.opencontainers.image.ref.name": name}
with open(out + "/index.json", "w") as f:
    json.dump({"schemaVersion": 2, "manifests": [manifest]}, f)
with open(out + "/oci-layout", "w") as f:
    f.write('{"imageLayoutVersion": "1.0.0"}')
EOF

# hostile NAME SPEC: the image NAME of SPEC pushed to the registry as $REGISTRY/hostile/NAME:1.
hostile() {
	python3 "$T_WORK/mkimage.py" "$T_WORK/layouts/$1" "$1" "$2" || { t_fail "cannot make the image '$1'"; return 1; }
	skopeo copy -q --preserve-digests --dest-tls-verify=false "oci:$T_WORK/layouts/$1:$1" "docker://$REGISTRY/hostile/$1:1" ||
		{ t_fail "cannot push the image '$1'"; return 1; }
}

# What a hostile image would reach: a directory beside the store, with a file in it.
OUTSIDE=$T_WORK/outside
reset_outside() {
	rm -rf "$OUTSIDE"
	mkdir -p "$OUTSIDE"
	printf 'precious\n' >"$OUTSIDE/victim"
}
# The victim is as it was, one link, and nothing else appeared beside the store.
expect_outside_intact() {
	[ -f "$OUTSIDE/victim" ] && [ ! -L "$OUTSIDE/victim" ] || { t_fail "the file outside was replaced or removed"; return; }
	expect_eq "$(cat "$OUTSIDE/victim")" "precious" "the file outside"
	expect_eq "$(stat -c %h "$OUTSIDE/victim")" "1" "links to the file outside"
	expect_eq "$(ls -A "$OUTSIDE")" "victim" "what is in the directory outside"
	expect_eq "$(ls -A "$T_WORK" | grep -v -x -e home -e userhome -e outside -e layouts -e mkimage.py -e stderr |
		grep -v '^registry-' | tr '\n' ' ')" "" "new files beside the store"
}
# root_of NAME: the root kiln predict makes for the image NAME (its manifest digest's first 32 digits).
root_of() {
	local d
	d=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' \
		"$T_WORK/layouts/$1/index.json")
	echo "$KILN_HOME/run/${d:7:32}-native"
}
# No root half-made: run/ holds no temporary directory of an unpack.
expect_no_partial_root() {
	expect_eq "$(ls -A "$KILN_HOME/run" 2>/dev/null | grep -c 'unpack-')" "0" "temporary roots left in run/"
	expect_eq "$(ls -A "$KILN_HOME/run/layers" 2>/dev/null | grep -c '^\.')" "0" "temporary weight trees left"
}

t_case "a code layer's absolute link below the weights: the weights do not follow it out of the root"
reset_outside
hostile abs-below "$(printf '[{"kind":"code","entries":[{"t":"l","name":"w","target":"%s"}]},
 {"kind":"weights","entries":[{"t":"d","name":"w/"},{"t":"f","name":"w/victim","data":"pwned\\n"},
 {"t":"l","name":"w/shadow","target":"/etc/shadow"}]}]' "$OUTSIDE")"
run_kiln predict "$REGISTRY/hostile/abs-below:1" --runtime native
expect_rc 1
expect_outside_intact
ROOT=$(root_of abs-below)
[ -n "$ROOT" ] && [ -d "$ROOT/w" ] && [ ! -L "$ROOT/w" ] || t_fail "the weights' directory did not replace the link"
expect_eq "$(cat "$ROOT/w/victim" 2>/dev/null)" "pwned" "the weight file, in the root"
expect_eq "$(readlink "$ROOT/w/shadow")" "/etc/shadow" "the weights' own link, copied as it is"
expect_no_partial_root

t_case "a relative '..' link above the weights replaces their directory, and the cache stays whole"
reset_outside
hostile rel-above '[{"kind":"weights","entries":[{"t":"d","name":"r/"},{"t":"f","name":"r/victim","data":"pwned\n"}]},
 {"kind":"code","entries":[{"t":"l","name":"r","target":"../../../outside"},{"t":"f","name":"src/p.py","data":"x"}]}]'
run_kiln predict "$REGISTRY/hostile/rel-above:1" --runtime native
expect_rc 1
expect_outside_intact
ROOT=$(root_of rel-above)
expect_eq "$(readlink "$ROOT/r" 2>/dev/null)" "../../../outside" "the code layer's link, above the weights"
expect_eq "$(cat "$KILN_HOME"/run/layers/*/r/victim 2>/dev/null | sort -u)" "pwned" "the cached weights"
expect_no_partial_root

t_case "a relative '..' link below the weights, deep and shallow: nothing is linked or planted outside"
reset_outside
hostile rel-below '[{"kind":"code","entries":[{"t":"d","name":"a/"},{"t":"l","name":"a/up","target":"../../../../outside"},
 {"t":"l","name":"top","target":"../../../outside"}]},
 {"kind":"weights","entries":[{"t":"d","name":"a/"},{"t":"d","name":"a/up/"},{"t":"f","name":"a/up/victim","data":"pwned\n"},
 {"t":"d","name":"top/"},{"t":"l","name":"top/planted","target":"/etc/shadow"}]}]'
run_kiln predict "$REGISTRY/hostile/rel-below:1" --runtime native
expect_rc 1
expect_outside_intact
[ ! -e "$OUTSIDE/planted" ] && [ ! -L "$OUTSIDE/planted" ] || t_fail "a link to /etc/shadow was planted outside"
expect_no_partial_root

t_case "a weight layer's whiteout through a lower layer's link is refused, naming the entry"
reset_outside
hostile wh-link "$(printf '[{"kind":"code","entries":[{"t":"l","name":"w","target":"%s"}]},
 {"kind":"weights","entries":[{"t":"f","name":"w/.wh.victim","data":""}]}]' "$OUTSIDE")"
run_kiln predict "$REGISTRY/hostile/wh-link:1" --runtime native
expect_rc 1
expect_contains "$ERR" "'w/.wh.victim' goes through the symbolic link 'w'"
expect_outside_intact
[ ! -e "$(root_of wh-link)" ] || t_fail "a root was made for the refused image"
expect_no_partial_root

t_case "a code layer's hard link carrying data is refused: the cached weights are not written through"
reset_outside
hostile link-data '[{"kind":"weights","entries":[{"t":"f","name":"m/model.bin","data":"weights\n"}]},
 {"kind":"code","entries":[{"t":"h","name":"evil","target":"m/model.bin","linkdata":"overwritten\n"}]}]'
run_kiln predict "$REGISTRY/hostile/link-data:1" --runtime native
expect_rc 1
expect_contains "$ERR" "'evil' is a hard link that carries data"
expect_eq "$(cat "$KILN_HOME"/run/layers/*/m/model.bin 2>/dev/null)" "weights" "the cached weight file"
expect_no_partial_root

t_case "setuid and setgid bits, others' write and foreign owners are not kept; the store is 0700"
reset_outside
chmod 0755 "$KILN_HOME/run" # as an older kiln left it
hostile modes '[{"kind":"weights","entries":[{"t":"d","name":"w/","mode":1023},{"t":"f","name":"w/suid","data":"x","mode":2541,"uid":0},
 {"t":"f","name":"w/mine","data":"y","mode":438,"uid":1234}]},
 {"kind":"code","entries":[{"t":"d","name":"bin/","mode":2047},{"t":"f","name":"bin/su","data":"#!/bin/sh\n","mode":3565,"uid":0},
 {"t":"f","name":"bin/other","data":"z","mode":493,"uid":4321}]}]'
run_kiln predict "$REGISTRY/hostile/modes:1" --runtime native
expect_rc 1
expect_eq "$(find "$KILN_HOME/run" -perm /6000 | wc -l)" "0" "setuid or setgid files in run/"
expect_eq "$(find "$KILN_HOME/run" ! -type l -perm -0002 | wc -l)" "0" "files or directories others may write"
expect_eq "$(find "$KILN_HOME/run" ! -user "$(id -u)" | wc -l)" "0" "files of another owner"
ROOT=$(root_of modes)
expect_eq "$(stat -c %a "$ROOT/bin/su" 2>/dev/null)" "755" "bin/su's mode"
expect_eq "$(stat -c %a "$ROOT/bin" 2>/dev/null)" "1775" "bin/'s mode (sticky kept: its group may write)"
expect_eq "$(stat -c %a "$ROOT/w" 2>/dev/null)" "1775" "w/'s mode"
expect_eq "$(stat -c %a "$ROOT/w/suid" 2>/dev/null)" "755" "a weight file's mode"
for d in "$KILN_HOME" "$KILN_HOME/run" "$KILN_HOME/run/layers" "$KILN_HOME/tmp" "$KILN_HOME/blobs"; do
	expect_eq "$(stat -c %a "$d")" "700" "the mode of $d"
done
KILN_HOME=$T_WORK/home2 run_kiln pull "$REGISTRY/hostile/modes:1"
expect_rc 0
expect_eq "$(find "$T_WORK/home2" -type d ! -perm 0700 | wc -l)" "0" "directories of a new store that are not 0700"
rm -rf "$T_WORK/home2"

t_case "an entry named with '..' is refused naming it; nothing is written outside, no root is left"
reset_outside
hostile dotdot '[{"kind":"code","entries":[{"t":"f","name":"src/p.py","data":"x"},
 {"t":"f","name":"src/../../../../outside/planted","data":"pwned"}]}]'
run_kiln predict "$REGISTRY/hostile/dotdot:1" --runtime native
expect_rc 1
expect_contains "$ERR" "src/../../../../outside/planted"
expect_outside_intact
[ ! -e "$(root_of dotdot)" ] || t_fail "a root was left"
expect_no_partial_root

t_case "absolute names land inside the root; device nodes are not made, and kiln says so"
reset_outside
hostile absdev "$(printf '[{"kind":"code","entries":[{"t":"f","name":"%s/victim","data":"pwned"},
 {"t":"d","name":"dev/"},{"t":"c","name":"dev/evil"},{"t":"c","name":"null-too"}]}]' "$OUTSIDE")"
run_kiln predict "$REGISTRY/hostile/absdev:1" --runtime native
expect_outside_intact
expect_contains "$ERR" "2 device nodes or sockets of the image were not made in its root"
ROOT=$(root_of absdev)
expect_eq "$(cat "$ROOT$OUTSIDE/victim" 2>/dev/null)" "pwned" "the absolute name, inside the root"
[ ! -e "$ROOT/dev/evil" ] && [ ! -e "$ROOT/null-too" ] || t_fail "a device node was made"
expect_no_partial_root

t_case "a gzip bomb is refused before it is written, naming the layer, and leaves no root"
reset_outside
hostile bomb '[{"kind":"code","gzip":true,"entries":[{"t":"f","name":"ok","data":"fine"},{"t":"f","name":"zeros","zeros":419430400}]}]'
BOMB_LAYER=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1]+"/index.json"))["manifests"][0]["digest"]
print(json.load(open(sys.argv[1]+"/blobs/sha256/"+m[7:]))["layers"][0]["digest"])' "$T_WORK/layouts/bomb")
USED=$(du -sm "$KILN_HOME" | cut -f1)
run_kiln predict "$REGISTRY/hostile/bomb:1" --runtime native
expect_rc 1
expect_contains "$ERR" "cannot unpack layer $BOMB_LAYER"
expect_contains "$ERR" "entry 'zeros' makes the layer expand to more than"
[ "$(du -sm "$KILN_HOME" | cut -f1)" -lt $((USED + 64)) ] || t_fail "the bomb was written: $(du -sh "$KILN_HOME")"
[ ! -e "$(root_of bomb)" ] || t_fail "a root was made for the bomb"
expect_no_partial_root

t_case "a sparse file of 1 TiB is refused: its apparent size counts"
hostile sparse '[{"kind":"code","entries":[{"t":"sparse","name":"huge","realsize":1099511627776}]}]'
run_kiln predict "$REGISTRY/hostile/sparse:1" --runtime native
expect_rc 1
expect_contains "$ERR" "entry 'huge' makes the layer expand to more than"
[ -z "$(find "$KILN_HOME/run" -size +1G 2>/dev/null)" ] || t_fail "a huge file was made: $(find "$KILN_HOME/run" -size +1G)"
expect_no_partial_root
expect_outside_intact

t_finish
