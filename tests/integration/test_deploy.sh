#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# kiln deploy: Knative and KServe manifests validated against the real CRDs (tests/fixtures/k8s) and checked
# field by field against the image's hints, with the image pinned by the digest the registry has; plain
# Kubernetes documents; GPU and registry-weights images; systemd units that really run (socket activation,
# idle exit, started again with no request lost); a plain image, bad options and contradictory hints.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/registry.sh"
source "$(dirname "$0")/shim_lib.sh"

export PYTHONDONTWRITEBYTECODE=1 KILN_ALLOW_CPU=1
unset KILN_PREFETCH_FILES COG_SETUP_TIMEOUT PORT
PY=/usr/bin/python3 # Debian's, with python3-jsonschema and python3-yaml
K8S=$KILN_SOURCE_DIR/tests/fixtures/k8s
VALIDATE=$KILN_SOURCE_DIR/tests/integration/k8s_validate.py
registry_start plain || exit 1
R=$PLAIN_REGISTRY

# yq FILE EXPR: EXPR evaluated on the YAML documents of FILE (`d`, a list). Prints the result.
yq() { "$PY" -c "import json,sys,yaml; d=[x for x in yaml.safe_load_all(open(sys.argv[1])) if x is not None]; r=($2); print(json.dumps(r) if isinstance(r,(dict,list)) else r)" "$1"; }

# The pod spec of the first document that has one (Knative's template, KServe's predictor, a Deployment's).
POD='next(s for x in d for s in [x["spec"].get("predictor") or x["spec"].get("template", {}).get("spec")] if s)'

# validate CRD FILE: FILE's documents against the CRD tests/fixtures/k8s/CRD; fails the case with the problems.
validate() {
	local out
	out=$("$PY" "$VALIDATE" "$K8S/$1" "$2" 2>&1) || t_fail "$2 does not validate against $1: $out"
}

# registry_digest REF: the manifest digest the registry gives for REF (skopeo, an independent reader).
registry_digest() { skopeo inspect --tls-verify=false "docker://$1" | json 'j["Digest"]'; }

# build_push DIR REF: kiln build DIR -t REF, then kiln push; stops the test file when either fails.
build_push() {
	run_kiln build "$1" -t "$2"
	[ "$RC" -eq 0 ] || { t_fail "build $2: $ERR"; t_finish; exit 1; }
	run_kiln push "$2"
	[ "$RC" -eq 0 ] || { t_fail "push $2: $ERR"; t_finish; exit 1; }
}

HINTS=$T_WORK/hinted
# Cog's concurrency.default_target is the autoscaler's target (serve.target_concurrency)
make_project "$HINTS" "concurrency:
  max: 3
  default_target: 2
serve:
  min_instances: 1
  max_instances: 4
  scaledown_window: 120"
build_push "$HINTS" "$R/deploy/hinted-model:1"
DIGEST=$(registry_digest "$R/deploy/hinted-model:1")
PINNED=$R/deploy/hinted-model@$DIGEST

t_case "knative: a Service the CRD accepts, pinned by digest, its annotations from the hints (pulled when missing)"
# a fresh store: the image is pulled from the registry
KILN_HOME=$T_WORK/fresh run_kiln deploy "$R/deploy/hinted-model:1" --target knative -o "$T_WORK/kn.yaml"
expect_rc 0
validate knative-serving-service.crd.yaml "$T_WORK/kn.yaml"
expect_eq "$(yq "$T_WORK/kn.yaml" 'len(d)')" 1 "documents"
expect_eq "$(yq "$T_WORK/kn.yaml" 'd[0]["metadata"]["name"]')" "hinted-model" "the name"
T='d[0]["spec"]["template"]'
expect_eq "$(yq "$T_WORK/kn.yaml" "$T[\"metadata\"][\"annotations\"]")" \
	'{"autoscaling.knative.dev/min-scale": "1", "autoscaling.knative.dev/max-scale": "4", "autoscaling.knative.dev/initial-scale": "1", "autoscaling.knative.dev/scale-down-delay": "120s", "autoscaling.knative.dev/target": "2"}' \
	"annotations"
expect_eq "$(yq "$T_WORK/kn.yaml" "$T[\"spec\"][\"containerConcurrency\"]")" 3 "containerConcurrency"
C="$T[\"spec\"][\"containers\"][0]"
expect_eq "$(yq "$T_WORK/kn.yaml" "$C[\"image\"]")" "$PINNED" "the image, pinned by the registry's digest"
expect_eq "$(yq "$T_WORK/kn.yaml" "$C[\"ports\"]")" '[{"containerPort": 5000, "name": "http1"}]' "ports"
expect_eq "$(yq "$T_WORK/kn.yaml" "[$C[p][\"httpGet\"][\"path\"] for p in (\"readinessProbe\", \"livenessProbe\", \"startupProbe\")]")" \
	'["/readyz", "/livez", "/readyz"]' "probe paths"
# the default budget: 300 s of setup
expect_eq "$(yq "$T_WORK/kn.yaml" "$C[\"startupProbe\"][\"failureThreshold\"] * $C[\"startupProbe\"][\"periodSeconds\"] >= 300")" True "startup budget"
expect_eq "$(yq "$T_WORK/kn.yaml" "\"resources\" in $C")" False "resources of a CPU image"
# the annotations' values are YAML strings, quoted
expect_contains "$(cat "$T_WORK/kn.yaml")" 'autoscaling.knative.dev/min-scale: "1"'

t_case "the validator refuses what the API server would: an undeclared field, a wrong type, another kind"
"$PY" -c 'import sys,yaml; d=yaml.safe_load(open(sys.argv[1])); c=d["spec"]["template"]["spec"]["containers"][0]; c["bogus"]=1; c["ports"][0]["containerPort"]="5000"; yaml.safe_dump(d, open(sys.argv[2], "w"))' \
	"$T_WORK/kn.yaml" "$T_WORK/kn-bad.yaml"
out=$("$PY" "$VALIDATE" "$K8S/knative-serving-service.crd.yaml" "$T_WORK/kn-bad.yaml" 2>&1)
expect_eq "$?" 1 "the validator's status on a bad manifest"
expect_contains "$out" "bogus"
expect_contains "$out" "containerPort"
out=$("$PY" "$VALIDATE" "$K8S/kserve-inferenceservice.crd.yaml" "$T_WORK/kn.yaml" 2>&1)
expect_eq "$?" 1 "the validator's status on a Service checked as an InferenceService"

t_case "kserve: an InferenceService the CRD accepts, with the replicas, scale target and concurrency of the hints"
run_kiln deploy "$R/deploy/hinted-model:1" --target kserve --namespace models --setup-timeout 900 -o "$T_WORK/ks.yaml"
expect_rc 0
validate kserve-inferenceservice.crd.yaml "$T_WORK/ks.yaml"
P='d[0]["spec"]["predictor"]'
expect_eq "$(yq "$T_WORK/ks.yaml" "[$P[k] for k in (\"minReplicas\", \"maxReplicas\", \"scaleMetric\", \"scaleTarget\", \"containerConcurrency\")]")" \
	'[1, 4, "concurrency", 2, 3]' "minReplicas, maxReplicas, scaleMetric, scaleTarget, containerConcurrency"
expect_eq "$(yq "$T_WORK/ks.yaml" 'd[0]["metadata"]["namespace"]')" "models" "namespace"
expect_eq "$(yq "$T_WORK/ks.yaml" 'd[0]["metadata"]["annotations"]["autoscaling.knative.dev/scale-down-delay"]')" "120s" "scale-down-delay"
C="$P[\"containers\"][0]"
expect_eq "$(yq "$T_WORK/ks.yaml" "$C[\"name\"]")" "kserve-container" "container name"
expect_eq "$(yq "$T_WORK/ks.yaml" "$C[\"image\"]")" "$PINNED" "image"
expect_eq "$(yq "$T_WORK/ks.yaml" "[$C[p][\"httpGet\"] for p in (\"readinessProbe\", \"livenessProbe\")]")" \
	'[{"path": "/readyz", "port": 5000}, {"path": "/livez", "port": 5000}]' "probes"
expect_eq "$(yq "$T_WORK/ks.yaml" "$C[\"startupProbe\"][\"failureThreshold\"] * $C[\"startupProbe\"][\"periodSeconds\"]")" 900 "startup budget of --setup-timeout"
expect_eq "$(yq "$T_WORK/ks.yaml" "$C[\"env\"]")" '[{"name": "COG_SETUP_TIMEOUT", "value": "900"}]' "the shim's setup timeout"

t_case "kubernetes: a Deployment, a Service and a HorizontalPodAutoscaler from the hints"
run_kiln deploy "$R/deploy/hinted-model:1" --target kubernetes --name web --port 8080
expect_rc 0
echo "$OUT" >"$T_WORK/k8s.yaml"
expect_eq "$(yq "$T_WORK/k8s.yaml" '[(x["apiVersion"], x["kind"]) for x in d]')" \
	'[["apps/v1", "Deployment"], ["v1", "Service"], ["autoscaling/v2", "HorizontalPodAutoscaler"]]' "documents"
expect_eq "$(yq "$T_WORK/k8s.yaml" '[x["metadata"]["name"] for x in d]')" '["web", "web", "web"]' "names"
expect_eq "$(yq "$T_WORK/k8s.yaml" 'd[0]["spec"]["replicas"]')" 1 "replicas"
expect_eq "$(yq "$T_WORK/k8s.yaml" 'd[0]["spec"]["selector"]["matchLabels"] == d[0]["spec"]["template"]["metadata"]["labels"] == d[1]["spec"]["selector"]')" True "selectors"
expect_eq "$(yq "$T_WORK/k8s.yaml" 'd[0]["spec"]["template"]["spec"]["containers"][0]["image"]')" "$PINNED" "image"
expect_eq "$(yq "$T_WORK/k8s.yaml" 'd[1]["spec"]["ports"]')" '[{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]' "Service ports"
H='d[2]["spec"]'
expect_eq "$(yq "$T_WORK/k8s.yaml" "[$H[\"minReplicas\"], $H[\"maxReplicas\"], $H[\"scaleTargetRef\"][\"name\"], $H[\"behavior\"][\"scaleDown\"][\"stabilizationWindowSeconds\"]]")" \
	'[1, 4, "web", 120]' "HPA minReplicas, maxReplicas, target, scale-down window"
expect_eq "$(yq "$T_WORK/k8s.yaml" "$H[\"metrics\"][0][\"resource\"][\"name\"]")" cpu "HPA metric"
expect_contains "$ERR" "target_concurrency 2: a HorizontalPodAutoscaler scales on CPU"

t_case "a GPU image (build.gpu: true) asks for nvidia.com/gpu"
GPU=$T_WORK/gpu
make_project "$GPU" "build:
  gpu: true
  cuda: \"12.4\""
build_push "$GPU" "$R/deploy/gpu:1"
for t in knative kserve kubernetes; do
	run_kiln deploy "$R/deploy/gpu:1" --target "$t" -o "$T_WORK/gpu-$t.yaml"
	expect_rc 0
	expect_eq "$(yq "$T_WORK/gpu-$t.yaml" "$POD[\"containers\"][0][\"resources\"][\"limits\"]")" '{"nvidia.com/gpu": 1}' "$t's GPU limit"
done
validate knative-serving-service.crd.yaml "$T_WORK/gpu-knative.yaml"
validate kserve-inferenceservice.crd.yaml "$T_WORK/gpu-kserve.yaml"

t_case "registry weights: the node cache as a hostPath volume, KILN_WEIGHTS_DIR, the pull secret's credentials"
RW=$T_WORK/rw
make_project "$RW" "weights: [\"models/*\"]
serve:
  weights: registry" models/w.bin 100000
build_push "$RW" "$R/deploy/rw:1"
for t in knative kserve kubernetes; do
	run_kiln deploy "$R/deploy/rw:1" --target "$t" --pull-secret regcred -o "$T_WORK/rw-$t.yaml"
	expect_rc 0
	S=$(yq "$T_WORK/rw-$t.yaml" "$POD")
	expect_eq "$(echo "$S" | json 'j["volumes"]')" \
		'[{"name": "kiln-weights", "hostPath": {"path": "/var/lib/kiln/weights", "type": "DirectoryOrCreate"}}, {"name": "kiln-registry-auth", "secret": {"secretName": "regcred", "items": [{"key": ".dockerconfigjson", "path": "config.json"}]}}]' \
		"$t's volumes"
	expect_eq "$(echo "$S" | json 'j["imagePullSecrets"]')" '[{"name": "regcred"}]' "$t's imagePullSecrets"
	expect_eq "$(echo "$S" | json 'j["containers"][0]["env"]')" \
		'[{"name": "KILN_WEIGHTS_DIR", "value": "/var/lib/kiln/weights"}, {"name": "DOCKER_CONFIG", "value": "/var/run/kiln/docker"}]' "$t's env"
	expect_eq "$(echo "$S" | json 'j["containers"][0]["volumeMounts"]')" \
		'[{"name": "kiln-weights", "mountPath": "/var/lib/kiln/weights"}, {"name": "kiln-registry-auth", "mountPath": "/var/run/kiln/docker", "readOnly": true}]' "$t's mounts"
done
validate knative-serving-service.crd.yaml "$T_WORK/rw-knative.yaml"
validate kserve-inferenceservice.crd.yaml "$T_WORK/rw-kserve.yaml"
run_kiln deploy "$R/deploy/rw:1" --target knative
expect_contains "$ERR" "kubernetes.podspec-volumes-hostpath"
expect_contains "$ERR" "give --pull-secret for a private repository"

t_case "the same image, the same options: byte-identical manifests"
for t in knative kserve kubernetes; do
	"$KILN" deploy "$R/deploy/rw:1" --target "$t" --pull-secret regcred -o "$T_WORK/again-$t.yaml" 2>/dev/null
	expect_file_same "$T_WORK/rw-$t.yaml" "$T_WORK/again-$t.yaml"
done

# ---------------------------------------------------------------- bad input

t_case "a plain image (not built by kiln): a warning naming the labels, defaults, a valid manifest"
debian_base || exit 1
skopeo copy --dest-tls-verify=false "oci:$DEBIAN_BASE:bookworm" "docker://$R/deploy/plain:12" >/dev/null 2>"$T_WORK/skopeo.err" ||
	t_fail "skopeo copy: $(cat "$T_WORK/skopeo.err")"
run_kiln deploy "$R/deploy/plain:12" --target knative -o "$T_WORK/plain.yaml"
expect_rc 0
expect_contains "$ERR" "has no dev.kiln.serve label (not built by kiln): defaults used: min_instances 0"
expect_contains "$ERR" "has no run.cog.config label"
validate knative-serving-service.crd.yaml "$T_WORK/plain.yaml"
expect_eq "$(yq "$T_WORK/plain.yaml" 'd[0]["spec"]["template"]["metadata"]["annotations"]')" \
	'{"autoscaling.knative.dev/min-scale": "0", "autoscaling.knative.dev/initial-scale": "1"}' "default annotations"
expect_eq "$(yq "$T_WORK/plain.yaml" 'd[0]["spec"]["template"]["spec"]["containerConcurrency"]')" 1 "default containerConcurrency"
expect_eq "$(yq "$T_WORK/plain.yaml" 'd[0]["spec"]["template"]["spec"]["containers"][0]["image"]')" \
	"$R/deploy/plain@$(registry_digest "$R/deploy/plain:12")" "image"

t_case "usage errors: unknown or missing --target, unknown options, bad names, options the target has none of"
run_kiln deploy "$R/deploy/hinted-model:1" --target nomad
expect_rc 2
expect_contains "$ERR" "--target: 'nomad' is not knative, kserve, kubernetes or systemd"
run_kiln deploy "$R/deploy/hinted-model:1"
expect_rc 2
expect_contains "$ERR" "--target is missing"
run_kiln deploy "$R/deploy/hinted-model:1" --target knative --replicas 3
expect_rc 2
expect_contains "$ERR" "unknown option '--replicas'"
run_kiln deploy "$R/deploy/hinted-model:1" --target knative --name My_Model
expect_rc 2
expect_contains "$ERR" "--name: 'My_Model' is not a DNS-1035 label"
run_kiln deploy "$R/deploy/hinted-model:1" --target knative --port 80
expect_rc 2
expect_contains "$ERR" "--port: knative routes to the container's port 5000 itself"
run_kiln deploy "$R/deploy/hinted-model:1" --target systemd --pull-secret regcred
expect_rc 2
expect_contains "$ERR" "--pull-secret"
run_kiln deploy "$HINTS" --target knative
expect_rc 2
expect_contains "$ERR" "is a directory: kiln deploy takes an image reference"

# push_serve_label TAG LABEL REF: the image at $T_WORK/minmax-oci:1 with its dev.kiln.serve label set to
# LABEL (umoci, as TAG there), copied to REF (skopeo): hints kiln itself would not write.
push_serve_label() {
	umoci config --image "$T_WORK/minmax-oci:1" --tag "$1" --config.label "dev.kiln.serve=$2" \
		2>"$T_WORK/umoci.err" || t_fail "umoci config: $(cat "$T_WORK/umoci.err")"
	skopeo copy --dest-tls-verify=false "oci:$T_WORK/minmax-oci:$1" "docker://$3" >/dev/null 2>"$T_WORK/skopeo.err" ||
		t_fail "skopeo copy: $(cat "$T_WORK/skopeo.err")"
}

t_case "min_instances above max_instances: exit 1 naming both, nothing written to -o"
run_kiln build "$HINTS" -t deploy/minmax:1 --output "oci:$T_WORK/minmax-oci:1"
expect_rc 0
push_serve_label 1 '{"min_instances":3,"max_instances":1}' "$R/deploy/minmax:1"
run_kiln deploy "$R/deploy/minmax:1" --target knative -o "$T_WORK/minmax.yaml"
expect_rc 1
expect_contains "$ERR" "label dev.kiln.serve: min_instances (3) is greater than max_instances (1)"
[ ! -e "$T_WORK/minmax.yaml" ] || t_fail "-o written on an error"
echo "kept" >"$T_WORK/kept.yaml"
run_kiln deploy "$R/deploy/minmax:1" --target kubernetes -o "$T_WORK/kept.yaml"
expect_rc 1
expect_eq "$(cat "$T_WORK/kept.yaml")" "kept" "an existing -o file after an error"
expect_eq "$(ls "$T_WORK" | grep -c 'kept.yaml.')" 0 "temporary files left"

t_case "a scaledown_window over an hour: clamped to Knative's and the HPA's hour, with a warning each"
push_serve_label 2 '{"scaledown_window":7200}' "$R/deploy/window:1"
run_kiln deploy "$R/deploy/window:1" --target knative -o "$T_WORK/window-kn.yaml"
expect_rc 0
expect_contains "$ERR" "scaledown_window 7200 s is longer than Knative's longest scale-down-delay: 3600 s"
expect_eq "$(yq "$T_WORK/window-kn.yaml" 'd[0]["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/scale-down-delay"]')" \
	"3600s" "the clamped scale-down-delay"
run_kiln deploy "$R/deploy/window:1" --target kubernetes -o "$T_WORK/window-k8s.yaml"
expect_rc 0
expect_contains "$ERR" "scaledown_window 7200 s is longer than a HorizontalPodAutoscaler's longest stabilization window: 3600 s"
expect_eq "$(yq "$T_WORK/window-k8s.yaml" 'd[2]["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"]')" \
	3600 "the clamped stabilization window"

t_case "-o into a directory that does not exist: a clear error, nothing made"
run_kiln deploy "$R/deploy/hinted-model:1" --target knative -o "$T_WORK/nowhere/kn.yaml"
expect_rc 1
expect_contains "$ERR" "cannot write '$T_WORK/nowhere/kn.yaml'"
[ ! -e "$T_WORK/nowhere" ] || t_fail "the directory was made"
run_kiln deploy "$R/deploy/hinted-model:1" --target systemd -o "$T_WORK/nowhere"
expect_rc 1
expect_contains "$ERR" "-o '$T_WORK/nowhere': not a directory"

t_case "a local-only name: pinned all the same, with a warning that the cluster must pull it"
run_kiln deploy deploy/minmax:1 --target knative --name local
expect_rc 0
expect_contains "$ERR" "'deploy/minmax:1' names no registry"
expect_contains "$OUT" "image: docker.io/deploy/minmax@sha256:"

# ---------------------------------------------------------------- systemd: scale to zero on one machine

SD=$T_WORK/sd
mkdir -p "$SD"
cp "$FIX/hello.py" "$SD/"
printf 'base: oci:%s:bookworm\nrun: hello.py:Predictor\nserve:\n  scaledown_window: 3\n' "$DEBIAN_BASE" >"$SD/kiln.yaml"
build_push "$SD" "$R/deploy/hello:1"
SD_DIGEST=$(registry_digest "$R/deploy/hello:1")

t_case "systemd: -o DIR writes NAME.socket and NAME.service: socket activation, idle exit, the store"
PORT_A=$(free_port)
mkdir -p "$T_WORK/units"
run_kiln deploy "$R/deploy/hello:1" --target systemd --port "$PORT_A" -o "$T_WORK/units"
expect_rc 0
expect_eq "$(ls "$T_WORK/units" | tr '\n' ' ')" "hello.service hello.socket " "the units"
SOCK=$(cat "$T_WORK/units/hello.socket")
SVC=$(cat "$T_WORK/units/hello.service")
expect_contains "$SOCK" "ListenStream=$PORT_A"
expect_contains "$SVC" "Requires=hello.socket"
expect_contains "$SVC" "Environment=KILN_HOME=$(realpath "$KILN_HOME")"
expect_contains "$SVC" "ExecStart=$(realpath "$KILN") serve $R/deploy/hello@$SD_DIGEST --idle-exit 3"
run_kiln deploy "$R/deploy/hello:1" --target systemd --port "$PORT_A"
expect_rc 0
expect_eq "$OUT" "$SOCK

$SVC" "standard output: both units, each under its own '# NAME.unit: ...' line"

# the units' own words: what systemd would run
LISTEN=$(sed -n 's/^ListenStream=//p' "$T_WORK/units/hello.socket")
read -r -a EXEC <<<"$(sed -n 's/^ExecStart=//p' "$T_WORK/units/hello.service")"
ENV_KV=() ENVS=()
while read -r kv; do ENV_KV+=("$kv") && ENVS+=(-E "$kv"); done < <(sed -n 's/^Environment=//p' "$T_WORK/units/hello.service")

t_case "systemd: started by socket activation, the first request is answered, then it exits idle"
socket_activate_once "$LISTEN" unit "${ENVS[@]}" -E HOME -E PATH -E KILN_ALLOW_CPU "${EXEC[@]}"

t_case "systemd: the socket starts the service again on the next requests, none lost"
# what systemd does for the socket unit (PID 1 is not systemd here), with the unit's command and environment
socket_unit_cycle env "${ENV_KV[@]}" "${EXEC[@]}"

t_finish
