# The streaming rows of the kubectl table (sourced by hack/test-kubectl --cluster KUBECONFIG):
# exec, cp, port-forward, attach and run -it with the real kubectl against a cluster whose nodes
# run containers. Uses check() and KUBECONFIG from hack/test-kubectl. Everything it makes is in
# the namespace kubectl-streams, deleted at the end. Every wait has a deadline.
NS=kubectl-streams
K=(kubectl -n "$NS")
IMAGE="${STREAMS_IMAGE:-$(kubectl get deploy web -o jsonpath='{.spec.template.spec.containers[0].image}' 2>/dev/null)}"
[ -n "$IMAGE" ] || die "no image for the streaming rows: set STREAMS_IMAGE, or run against a hack/up cluster (its web Deployment's image)"
ST="$(mktemp -d)"
streams_cleanup() {
  for p in ${PF_PID:-}; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
  rm -rf "$ST"
}
trap streams_cleanup EXIT
kubectl create namespace "$NS" >/dev/null
"${K[@]}" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: box}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: $IMAGE
    command: ["/bin/sh", "-c", "mkdir -p /www && echo hello-streams > /www/index.html && exec busybox httpd -f -p 8080 -h /www"]
  - name: reader
    image: $IMAGE
    command: ["/bin/sh", "-c", "echo reader-up; while read l; do echo got:\$l; done; echo stdin-closed"]
    stdin: true
    stdinOnce: true
  - name: term
    image: $IMAGE
    command: ["/bin/sh"]
    stdin: true
    tty: true
YAML
wait_for 90 bash -c "[ \"\$(kubectl -n $NS get pod box -o jsonpath='{.status.containerStatuses[*].ready}')\" = 'true true true' ]" \
  || { kubectl -n "$NS" get pod box -o yaml; die "pod box not Ready"; }

# exec
check "exec"                    '^exec-ok$'              "${K[@]}" exec box -- echo exec-ok
check "exec exit code"          '^rc=3$'                 bash -c "${K[*]} exec box -- sh -c 'exit 3'; echo rc=\$?"
check "exec -i piped stdin"     '^piped-in$'             bash -c "printf 'piped-in\n' | ${K[*]} exec -i box -- cat"
check "exec -c stderr"          'to-stderr'              "${K[@]}" exec box -c reader -- sh -c 'echo to-stderr >&2'
check "exec over plain SPDY"    '^spdy-in rc=6$'         bash -c "out=\$(printf 'spdy-in\n' | KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false ${K[*]} exec -i box -- sh -c 'cat; exit 6'); echo \"\$out rc=\$?\""
# -t needs a terminal on kubectl's side: script(1) gives it one.
check "exec -it (a terminal, its size)" 'term-ok 33 91' \
  timeout 60 script -qec "stty cols 91 rows 33; ${K[*]} exec -it box -- sh -c 'echo term-ok \$(stty size)'" /dev/null

# cp: a file both ways (checksum), a directory both ways
head -c 2000000 /dev/urandom >"$ST/big"; mkdir -p "$ST/dir/sub"; echo small >"$ST/dir/small"; cp "$ST/big" "$ST/dir/sub/"
check "cp a file into the pod"   '^$'                    "${K[@]}" cp -c main "$ST/big" box:/tmp/big
check "cp the file back, same md5" "^$(md5sum <"$ST/big" | cut -c1-32)" \
  bash -c "${K[*]} cp -c main box:/tmp/big '$ST/big.back' >/dev/null && md5sum <'$ST/big.back'"
check "md5 inside the pod"       "^$(md5sum <"$ST/big" | cut -c1-32)" "${K[@]}" exec box -- md5sum /tmp/big
check "cp a directory in and out" '^same$' \
  bash -c "${K[*]} cp -c main '$ST/dir' box:/tmp/dir && ${K[*]} cp -c main box:/tmp/dir '$ST/dir.back' && diff -r '$ST/dir' '$ST/dir.back' && echo same"

# port-forward plus curl: kubectl's WebSocket tunnel, and the plain SPDY upgrade
pf() { # pf NAME PORT [ENV...]: a forward in the background, 20 concurrent curls through it
  local name="$1" port="$2"; shift 2
  env "$@" kubectl -n "$NS" port-forward pod/box "$port:8080" >"$ST/pf-$port.log" 2>&1 &
  PF_PID=$!
  wait_for 20 curl -sf -m 3 -o /dev/null "http://127.0.0.1:$port/" || true
  for i in $(seq 1 20); do curl -s -m 15 -o "$ST/pf-$port-$i" "http://127.0.0.1:$port/" & done
  wait_all_but "$PF_PID"
  check "$name" '^20$' bash -c "cat '$ST'/pf-$port-* 2>/dev/null | grep -c hello-streams"
  kill "$PF_PID" 2>/dev/null; wait "$PF_PID" 2>/dev/null || true; PF_PID=
}
wait_all_but() { local p; for p in $(jobs -p); do [ "$p" = "$1" ] || wait "$p" 2>/dev/null || true; done; }
pf "port-forward + curl (20 concurrent)" "$(free_port)"
pf "port-forward over plain SPDY + curl" "$(free_port)" KUBECTL_PORT_FORWARD_WEBSOCKETS=false
check "port-forward to a closed port" 'Connection refused|connection refused' \
  bash -c "port=\$(python3 -c 'import socket; s=socket.socket(); s.bind((\"127.0.0.1\",0)); print(s.getsockname()[1])');
           ${K[*]} port-forward pod/box \$port:9 >'$ST/pf9.log' 2>&1 & p=\$!;
           for i in \$(seq 1 50); do curl -s -m 2 http://127.0.0.1:\$port/ >/dev/null 2>&1 && break; grep -q refused '$ST/pf9.log' && break; sleep 0.2; done;
           sleep 0.5; kill \$p; cat '$ST/pf9.log'"

# attach: piped stdin into a container with stdin: true; then a terminal (tty: true). script(1)
# gives kubectl a terminal; what is typed into it goes in after kubectl has attached.
# (The reader exits once its stdin is closed, which ends the attach; it is then restarted.)
check "attach -i"               'got:two.*stdin-closed'  bash -c "printf 'one\ntwo\n' | timeout 30 ${K[*]} attach -i box -c reader 2>&1 | tr '\n' ' '"
cat >"$ST/attach-it" <<EOF
(sleep 3; printf 'echo term-\$\$-\$((6*7))\r'; sleep 3) | timeout 30 script -qec "kubectl -n $NS attach -it box -c term" /dev/null
EOF
check "attach -it (a terminal)" 'term-[0-9]+-42'         bash "$ST/attach-it"
cat >"$ST/run-it" <<EOF
(sleep 5; printf 'hello\r'; sleep 8) | timeout 90 script -qec "kubectl -n $NS run -it --rm --restart=Never --image=$IMAGE runit -- sh -c 'read x; echo run-it-\\\$x'" /dev/null
EOF
check "run -it --rm"            'run-it-hello'           bash "$ST/run-it"
check "run -it removed its pod" 'NotFound'               bash -c "! ${K[*]} get pod runit"
