# SPDX-License-Identifier: Apache-2.0
# registry.sh: start/stop loopback registries (plain, TLS + Basic auth, token auth) and a fault proxy for integration tests.
#
# Source after lib.sh (uses T_WORK, t_defer, KILN_SOURCE_DIR). Every function returns non-zero, after printing
# why (and the tail of the process's log) on stderr, when a start fails: use `registry_start plain || exit 1`.
# Call them in the test's own shell, not in $(...): they export variables and remember process ids.
#
# registry_start plain|tls|token [PREFIX]
#   Starts /usr/bin/docker-registry on 127.0.0.1:<free port>, filesystem storage under $T_WORK, delete enabled,
#   and waits (20 s at most) until GET /v2/ answers. Exports, replacing those of an earlier call:
#     REGISTRY=127.0.0.1:PORT  REGISTRY_KIND  REGISTRY_SCHEME=http|https  REGISTRY_DIR (its data)  REGISTRY_LOG
#   tls:   REGISTRY_CA (CA pem), REGISTRY_CERT_DIR (holds ca.crt, for skopeo --cert-dir), REGISTRY_USER=kiln,
#          REGISTRY_PASSWORD (random per run); htpasswd Basic auth; server cert for IP:127.0.0.1, DNS:localhost.
#   token: plain HTTP registry with distribution's "auth: token" (service kiln-test, issuer kiln-test-issuer);
#          TOKEN_SERVER=127.0.0.1:PORT (realm http://$TOKEN_SERVER/token, GET /stats counts tokens),
#          REGISTRY_USER=kiln/REGISTRY_PASSWORD (pull,push,delete), REGISTRY_READER=reader/REGISTRY_READER_PASSWORD
#          (pull only). Anonymous token requests get a token with no access (TOKEN_ANONYMOUS=pull to change);
#          tokens last TOKEN_EXPIRES_IN seconds (default 300).
#   Each call also exports the same values under PREFIX_ (default: the kind in capitals), so several registries
#   can be used at once: PLAIN_REGISTRY, TLS_REGISTRY, TLS_REGISTRY_CA, TLS_REGISTRY_CERT_DIR, TLS_REGISTRY_USER,
#   TLS_REGISTRY_PASSWORD, TOKEN_REGISTRY, TOKEN_TOKEN_SERVER, TOKEN_REGISTRY_PASSWORD, ...
# registry_stop
#   Stops everything this file started (registries, token servers, fault proxies). Also registered with t_defer.
# fault_proxy_start [--upstream HOST:PORT] [FAULT...]
#   Starts tests/fixtures/registry/fault_proxy.py in front of $REGISTRY (or HOST:PORT); exports FAULTY=127.0.0.1:PORT
#   (and FAULTY_SCHEME, FAULTY_LOG). In front of a tls registry the proxy serves TLS with the same certificate
#   (valid for 127.0.0.1, any port), so REGISTRY_CA / REGISTRY_CERT_DIR work for it too.
#   FAULT specs: none | drop_mid_body:N[:COUNT] | drop_mid_response:N[:COUNT] | corrupt:N[:COUNT] | strip_range[:COUNT]
#   | tls_silent[:COUNT] | status:CODE[:COUNT[:RETRY_AFTER]] | stall:SECONDS[:COUNT]
#   | body:garbage|huge[:COUNT] (a 200 to a GET whose body is not JSON, or 5 MiB),
#   each optionally followed by ;method=REGEX ;path=REGEX ;every=K (see fault_proxy.py).
# fault_proxy_set FAULT...   replaces the faults of the proxy at $FAULTY (POST /__fault__); prints its state.
# fault_proxy_state          prints the proxy's state JSON (faults with seen/fired/left, requests, applied, ranges).
# registry_logs              prints the tail of every log these functions wrote (for a failing test).

REGISTRY_FIXTURES=${REGISTRY_FIXTURES:-$KILN_SOURCE_DIR/tests/fixtures/registry}
REGISTRY_BIN=${REGISTRY_BIN:-/usr/bin/docker-registry}
_REGISTRY_PIDS=()
_REGISTRY_LOGS=()
_REGISTRY_N=0
declare -gA _REGISTRY_TLSDIR=()   # HOST:PORT of a TLS registry or proxy -> directory with ca.crt server.crt server.key

_registry_free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

_registry_alive() {
	local st
	st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
	[ -n "$st" ] && [ "$st" != Z ]
}

_registry_kill() {
	local pid=$1
	kill -TERM "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
	for _ in $(seq 50); do
		_registry_alive "$pid" || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return 0
}

_registry_fail() { # MESSAGE LOG
	echo "registry.sh: $1" >&2
	if [ -n "${2:-}" ] && [ -f "$2" ]; then
		echo "---- last lines of $2 ----" >&2
		tail -n 25 "$2" >&2
		echo "----" >&2
	fi
	return 1
}

# Start a command in the background with its output in LOG; sets _REGISTRY_PID.
_registry_spawn() { # LOG CMD...
	local log=$1
	shift
	"$@" >>"$log" 2>&1 </dev/null &
	_REGISTRY_PID=$!
	_REGISTRY_PIDS+=("$_REGISTRY_PID")
	_REGISTRY_LOGS+=("$log")
	t_defer "_registry_kill $_REGISTRY_PID"
}

# Wait until URL answers any HTTP status (20 s at most).
_registry_wait_http() { # NAME PID LOG URL [CURL ARGS...]
	local name=$1 pid=$2 log=$3 url=$4 code
	shift 4
	for _ in $(seq 200); do
		_registry_alive "$pid" || { _registry_fail "$name exited while starting" "$log"; return 1; }
		code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$@" "$url" 2>/dev/null)
		[ "$code" != 000 ] && [ -n "$code" ] && return 0
		sleep 0.1
	done
	_registry_fail "$name did not answer $url within 20 s" "$log"
}

# Wait for a server that binds port 0 to write its port to FILE; echoes the port.
_registry_wait_portfile() { # NAME PID LOG FILE
	for _ in $(seq 200); do
		[ -s "$4" ] && { cat "$4"; return 0; }
		_registry_alive "$2" || { _registry_fail "$1 exited while starting" "$3"; return 1; }
		sleep 0.1
	done
	_registry_fail "$1 did not start listening within 20 s" "$3"
}

_registry_make_tls() { # DIR
	local d=$1
	mkdir -p "$d/certs.d"
	{
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
			-keyout "$d/ca.key" -out "$d/ca.crt" -subj "/CN=kiln-test-ca" \
			-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" &&
			openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
				-keyout "$d/server.key" -out "$d/server.csr" -subj "/CN=127.0.0.1" &&
			printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=CA:FALSE" \
				"keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >"$d/server.ext" &&
			openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
				-extfile "$d/server.ext" -out "$d/server.crt"
	} >"$d/openssl.log" 2>&1 || { _registry_fail "could not make TLS certificates" "$d/openssl.log"; return 1; }
	cp "$d/ca.crt" "$d/certs.d/ca.crt"
}

# Export NAME=VALUE, and PREFIX_NAME=VALUE.
_registry_export() { # PREFIX NAME VALUE
	export "$2=$3"
	export "$1_$2=$3"
}

registry_start() { # plain|tls|token [PREFIX]
	local kind=${1:?registry_start plain|tls|token [PREFIX]} prefix=${2:-}
	case $kind in plain | tls | token) ;; *)
		_registry_fail "unknown registry kind '$kind' (plain, tls or token)"
		return 1
		;;
	esac
	[ -n "$prefix" ] || prefix=${kind^^}
	[ -x "$REGISTRY_BIN" ] || { _registry_fail "$REGISTRY_BIN not found (scripts/deps.sh installs docker-registry)"; return 1; }
	_REGISTRY_N=$((_REGISTRY_N + 1))
	local dir=$T_WORK/registry-$_REGISTRY_N-$kind
	local log=$T_WORK/registry-$_REGISTRY_N-$kind.log
	mkdir -p "$dir/data"
	local scheme=http curl_args=() user=kiln password reader_password tport=""

	# For the next kind-specific variables: unset them so a value from an earlier call cannot mislead.
	unset REGISTRY_CA REGISTRY_CERT_DIR REGISTRY_USER REGISTRY_PASSWORD REGISTRY_READER REGISTRY_READER_PASSWORD TOKEN_SERVER

	local auth=""
	case $kind in
	tls)
		command -v htpasswd >/dev/null || { _registry_fail "htpasswd not found (scripts/deps.sh installs apache2-utils)"; return 1; }
		_registry_make_tls "$dir" || return 1
		password=$(openssl rand -hex 16)
		htpasswd -Bbn "$user" "$password" >"$dir/htpasswd" 2>/dev/null || { _registry_fail "htpasswd failed"; return 1; }
		scheme=https
		curl_args=(--cacert "$dir/ca.crt")
		auth="auth:
  htpasswd:
    realm: kiln-test
    path: $dir/htpasswd"
		;;
	token)
		password=$(openssl rand -hex 16)
		reader_password=$(openssl rand -hex 16)
		openssl req -x509 -newkey rsa:2048 -nodes -days 2 -keyout "$dir/token.key" -out "$dir/token.crt" \
			-subj "/CN=kiln-test-token-signer" >"$dir/openssl.log" 2>&1 ||
			{ _registry_fail "could not make the token signing key" "$dir/openssl.log"; return 1; }
		printf '%s\n' "$user:$password:pull,push,delete" "reader:$reader_password:pull" >"$dir/users"
		local tlog=$T_WORK/token-server-$_REGISTRY_N.log
		_registry_spawn "$tlog" python3 "$REGISTRY_FIXTURES/token_server.py" --port 0 --port-file "$dir/token.port" \
			--key "$dir/token.key" --cert "$dir/token.crt" --users "$dir/users" --service kiln-test \
			--issuer kiln-test-issuer --expires-in "${TOKEN_EXPIRES_IN:-300}" --anonymous "${TOKEN_ANONYMOUS:-none}"
		local tpid=$_REGISTRY_PID
		tport=$(_registry_wait_portfile "token server" "$tpid" "$tlog" "$dir/token.port") || return 1
		_registry_wait_http "token server" "$tpid" "$tlog" "http://127.0.0.1:$tport/healthz" || return 1
		auth="auth:
  token:
    realm: http://127.0.0.1:$tport/token
    service: kiln-test
    issuer: kiln-test-issuer
    rootcertbundle: $dir/token.crt"
		;;
	esac

	local try port pid
	for try in 1 2 3; do
		port=$(_registry_free_port)
		{
			cat <<EOF
version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
health:
  storagedriver:
    enabled: false
http:
  addr: 127.0.0.1:$port
  secret: $(openssl rand -hex 16)
  headers:
    X-Content-Type-Options: [nosniff]
EOF
			if [ "$kind" = tls ]; then
				printf '  tls:\n    certificate: %s\n    key: %s\n' "$dir/server.crt" "$dir/server.key"
			fi
			[ -z "$auth" ] || printf '%s\n' "$auth"
		} >"$dir/config.yml"
		# A clean environment: distribution reads REGISTRY_* variables as configuration overrides.
		_registry_spawn "$log" env -i PATH="$PATH" HOME="$HOME" "$REGISTRY_BIN" serve "$dir/config.yml"
		pid=$_REGISTRY_PID
		if _registry_wait_http "docker-registry ($kind)" "$pid" "$log" "$scheme://127.0.0.1:$port/v2/" "${curl_args[@]}" 2>"$dir/start.err"; then
			break
		fi
		if [ "$try" -lt 3 ] && grep -q "address already in use" "$log"; then
			_registry_kill "$pid"
			continue
		fi
		cat "$dir/start.err" >&2
		return 1
	done

	_registry_export "$prefix" REGISTRY "127.0.0.1:$port"
	_registry_export "$prefix" REGISTRY_KIND "$kind"
	_registry_export "$prefix" REGISTRY_SCHEME "$scheme"
	_registry_export "$prefix" REGISTRY_DIR "$dir/data"
	_registry_export "$prefix" REGISTRY_LOG "$log"
	case $kind in
	tls)
		_REGISTRY_TLSDIR["127.0.0.1:$port"]=$dir
		_registry_export "$prefix" REGISTRY_CA "$dir/ca.crt"
		_registry_export "$prefix" REGISTRY_CERT_DIR "$dir/certs.d"
		_registry_export "$prefix" REGISTRY_USER "$user"
		_registry_export "$prefix" REGISTRY_PASSWORD "$password"
		;;
	token)
		_registry_export "$prefix" TOKEN_SERVER "127.0.0.1:$tport"
		_registry_export "$prefix" REGISTRY_USER "$user"
		_registry_export "$prefix" REGISTRY_PASSWORD "$password"
		_registry_export "$prefix" REGISTRY_READER reader
		_registry_export "$prefix" REGISTRY_READER_PASSWORD "$reader_password"
		;;
	esac
	return 0
}

registry_stop() {
	local pid
	for pid in "${_REGISTRY_PIDS[@]}"; do _registry_kill "$pid"; done
	_REGISTRY_PIDS=()
	return 0
}

fault_proxy_start() { # [--upstream HOST:PORT] [FAULT...]
	local upstream=${REGISTRY:-}
	if [ "${1:-}" = --upstream ]; then
		upstream=$2
		shift 2
	fi
	[ -n "$upstream" ] || { _registry_fail "fault_proxy_start: no \$REGISTRY and no --upstream"; return 1; }
	_REGISTRY_N=$((_REGISTRY_N + 1))
	local log=$T_WORK/fault-proxy-$_REGISTRY_N.log pfile=$T_WORK/fault-proxy-$_REGISTRY_N.port
	local tls=() scheme=http curl_args=() tdir=${_REGISTRY_TLSDIR[$upstream]:-}
	if [ -n "$tdir" ]; then
		tls=(--upstream-tls --upstream-ca "$tdir/ca.crt" --tls-cert "$tdir/server.crt" --tls-key "$tdir/server.key")
		scheme=https
		curl_args=(--cacert "$tdir/ca.crt")
	fi
	_registry_spawn "$log" python3 "$REGISTRY_FIXTURES/fault_proxy.py" --upstream "$upstream" --port 0 \
		--port-file "$pfile" "${tls[@]}" "$@"
	local pid=$_REGISTRY_PID port
	port=$(_registry_wait_portfile "fault proxy" "$pid" "$log" "$pfile") || return 1
	_registry_wait_http "fault proxy" "$pid" "$log" "$scheme://127.0.0.1:$port/__fault__" "${curl_args[@]}" || return 1
	[ -z "$tdir" ] || _REGISTRY_TLSDIR["127.0.0.1:$port"]=$tdir
	export FAULTY=127.0.0.1:$port FAULTY_SCHEME=$scheme FAULTY_LOG=$log
}

_fault_proxy_curl() {
	local tdir=${_REGISTRY_TLSDIR[${FAULTY:?no fault proxy started}]:-} ca=()
	[ -z "$tdir" ] || ca=(--cacert "$tdir/ca.crt")
	curl -sS --max-time 10 "${ca[@]}" "$@"
}

fault_proxy_set() { # FAULT...
	local body
	body=$(python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@")
	_fault_proxy_curl -f -X POST -H 'Content-Type: application/json' --data-binary "$body" "$FAULTY_SCHEME://$FAULTY/__fault__"
}

fault_proxy_state() {
	_fault_proxy_curl -f "$FAULTY_SCHEME://$FAULTY/__fault__"
}

registry_logs() {
	local l
	for l in "${_REGISTRY_LOGS[@]}"; do
		[ -f "$l" ] || continue
		echo "---- $l ----"
		tail -n 40 "$l"
	done
}
