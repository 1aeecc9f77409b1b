# Small helpers over ctl for the e2e and chaos scripts. Source after cluster.sh.
export KUBECONFIG="$RUN_DIR/data/admin.kubeconfig"
CTL="$BIN/ctl"

# jq-like access with python3: json_get EXPR < json   (EXPR in python, the document is `d`)
json_get() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# pods_json [selector]: all pods (of a label selector) as JSON.
pods_json() { "$CTL" get pods ${1:+-l "$1"} -o json; }

# ready_pods SELECTOR: "name node ip" of pods that are Running, Ready and not terminating.
ready_pods() {
  pods_json "$1" | python3 -c '
import json, sys
for p in json.load(sys.stdin)["items"]:
    st = p.get("status", {})
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions", []))
    if st.get("phase") == "Running" and ready and not p["metadata"].get("deletionTimestamp"):
        print(p["metadata"]["name"], p["spec"].get("nodeName", ""), st.get("podIP", ""))'
}

# container_of POD: "node runcID" of the pod's first running container.
container_of() {
  local pod="$1" uid node
  read -r uid node < <("$CTL" get pod "$pod" -o json | json_get 'd["metadata"]["uid"] + " " + d["spec"]["nodeName"]')
  echo "$node $(runc --root "$RUN_DIR/nodes/$node/runc" list -q | awk -v u="$uid." 'index($0, u) == 1 && !f { print; f = 1 }')"
}

# exec_in POD CMD...: runs a command in the pod's container (runc exec on its node).
exec_in() {
  local pod="$1"; shift
  local node id; read -r node id < <(container_of "$pod")
  [ -n "$id" ] || { echo "no running container for $pod" >&2; return 1; }
  runc --root "$RUN_DIR/nodes/$node/runc" exec "$id" "$@"
}

# dump_state: what a failed check needs to be understood from a CI log alone: pods, ReplicaSets,
# the newest events and the tail of the control plane's logs. Bounded output.
dump_state() {
  echo "  ---- state at $(date -u +%H:%M:%S) ----"
  "$CTL" get pods -A -o wide 2>&1 | head -40 | sed 's/^/  | /'
  "$CTL" get rs -A 2>&1 | head -20 | sed 's/^/  | /'
  "$CTL" get events -A 2>&1 | tail -25 | sed 's/^/  | /'
  local f; for f in controller-manager scheduler; do
    [ -f "$RUN_DIR/$f.log" ] && { echo "  | -- $f.log"; tail -15 "$RUN_DIR/$f.log" | cut -c1-300 | sed 's/^/  | /'; }
  done
  # What each pod's agent said about it, for pods stuck terminating (the node's to finish) and
  # for pods not ready (probes, restarts); at most 6 pods.
  local name node
  while read -r name node; do
    [ -n "$node" ] && [ -f "$RUN_DIR/agent-$node.log" ] || continue
    echo "  | -- agent-$node.log on $name"
    grep -a "$name" "$RUN_DIR/agent-$node.log" | tail -n 8 | cut -c1-300 | sed 's/^/  | /'
    grep -aE "warning|error" "$RUN_DIR/agent-$node.log" | tail -n 5 | cut -c1-300 | sed 's/^/  | /'
  done < <("$CTL" get pods -A -o wide 2>/dev/null | awk 'NR > 1 { split($3, r, "/"); if ($4 == "Terminating" || $4 == "CrashLoopBackOff" || ($4 == "Running" && r[1] != r[2])) print $2, $8 }' | head -6)
  # The newest warnings (probe failures, back-off), which the table above may have cut.
  "$CTL" get events -A 2>&1 | grep -a ' Warning ' | tail -12 | cut -c1-300 | sed 's/^/  | /'
  echo "  ---- end of state ----"
  diagnose_pods
}

# diagnose_pods: for the first two pods that run but are not ready, or crash-loop, what the
# node itself shows: the pod's network namespace and who else holds its address, what listens
# in it, the container as runc sees it and its processes (state and where they sleep), a probe
# from the node and from inside the pod, the container's log and the agent's warnings about it.
# Printed, and the first run's kept in $DIAG_FILE (hack/test repeats it last, where a CI log is
# read). Never fails.
diagnose_pods() {
  local file="${DIAG_FILE:-$ROOT/out/suites/diagnosis.txt}" lines
  lines="$(_diagnose_pods 2>&1 | cut -c1-260 | head -40)" || true
  [ -n "$lines" ] || return 0
  printf '%s\n' "$lines" | sed 's/^/  | /'
  if [ ! -s "$file" ]; then mkdir -p "$(dirname "$file")" && printf '%s\n' "$lines" >"$file"; fi
  return 0
}
_diagnose_pods() {
  local rows; rows="$("$CTL" get pods -A -o json 2>/dev/null | python3 -c '
import json, sys
n = 0
for p in json.load(sys.stdin)["items"]:
    st, sp = p.get("status", {}), p.get("spec", {})
    if st.get("phase") != "Running" or p["metadata"].get("deletionTimestamp"): continue
    if any(c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions", [])): continue
    cs = (st.get("containerStatuses") or [{}])[0]
    c = sp["containers"][0]
    port = next((pr.get("containerPort") for pr in c.get("ports", [])), "")
    print(p["metadata"]["namespace"], p["metadata"]["name"], p["metadata"]["uid"], sp.get("nodeName", ""), st.get("podIP", ""), c["name"], port, cs.get("restartCount", 0))
    n += 1
    if n == 2: break' 2>/dev/null)" || return 0
  local ns name uid node ip cname port restarts pns
  while read -r ns name uid node ip cname port restarts; do
    [ -n "$uid" ] || continue
    pns="orch-${uid:0:36}"
    echo "diag: $ns/$name uid $uid on $node, ip $ip, restarts $restarts, netns $pns"
    if [ -e "/run/netns/$pns" ]; then
      echo "diag:   netns addresses: $(ip -n "$pns" -4 -o addr 2>&1 | awk '{print $2"="$4}' | tr '\n' ' ')"
      echo "diag:   listening in it: $(ip netns exec "$pns" ss -Hltn 2>&1 | awk '{print $4}' | tr '\n' ' ')"
    else
      echo "diag:   /run/netns/$pns is missing"
    fi
    local holders="" x
    for x in $(ip netns list 2>/dev/null | awk '{print $1}'); do
      ip -n "$x" -4 -o addr 2>/dev/null | grep -q " $ip/" && holders+="$x "
    done
    echo "diag:   namespaces holding $ip: ${holders:-none}"
    local root="$RUN_DIR/nodes/$node/runc" id status pid
    read -r id pid status < <(runc --root "$root" list 2>/dev/null | awk -v u="$uid." 'index($1, u) == 1 { print $1, $2, $3 }' | sort -t. -k3 -n | tail -1)
    echo "diag:   runc: ${id:-no container} ${status:-} pid ${pid:-}"
    if [ -n "${pid:-}" ] && [ "$pid" != 0 ] && [ -d "/proc/$pid" ]; then
      local procs="" cg q
      cg="$(awk -F: '$2 == "pids" || $2 == "" { print $3; exit }' "/proc/$pid/cgroup")"
      for q in $(cat "/sys/fs/cgroup/pids$cg/cgroup.procs" "/sys/fs/cgroup$cg/cgroup.procs" "/sys/fs/cgroup/unified$cg/cgroup.procs" 2>/dev/null | sort -un | head -8); do
        procs+="$q:$(tr '\0' ' ' <"/proc/$q/cmdline" 2>/dev/null | cut -c1-40)[$(awk '{print $3}' "/proc/$q/stat" 2>/dev/null)/$(cat "/proc/$q/wchan" 2>/dev/null)] "
      done
      echo "diag:   processes: ${procs:-none found (cgroup $cg)}"
      echo "diag:   its net namespace: $(readlink "/proc/$pid/ns/net") vs the pod's $(ip netns exec "$pns" readlink /proc/self/ns/net 2>/dev/null)"
    fi
    if [ -n "$port" ] && [ -n "$ip" ]; then
      local a b
      a="$(nsenter --net="/run/netns/$(netns_of "$node")" curl -sS -o /dev/null -m 2 -w '%{http_code}' "http://$ip:$port/" 2>&1 | tr '\n' ' ')"
      b="$(ip netns exec "$pns" curl -sS -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$port/" 2>&1 | tr '\n' ' ')"
      echo "diag:   GET :$port from the node: $a; inside the pod: $b"
    fi
    local log; log="$(ls -t "$RUN_DIR/nodes/$node/pods/$uid/logs/$cname/"*.log 2>/dev/null | head -1)"
    echo "diag:   log ${log##*/}: $(tail -c 300 "$log" 2>/dev/null | tail -3 | tr '\n' '|')"
    grep -a "$uid\|$name" "$RUN_DIR/agent-$node.log" 2>/dev/null | grep -aE "warning|error" | tail -3 | sed 's/^/diag:   agent: /'
  done <<<"$rows"
}

# wait_until SECONDS DESCRIPTION CMD...: polls CMD until it succeeds; fails with DESCRIPTION.
wait_until() {
  local secs="$1" what="$2"; shift 2
  local deadline=$(( $(date +%s%N) / 1000000 + secs * 1000 ))
  until "$@" >/dev/null 2>&1; do
    [ $(( $(date +%s%N) / 1000000 )) -lt "$deadline" ] || { echo "timed out after ${secs}s: $what" >&2; return 1; }
    sleep 0.2
  done
}
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
count_ready() { ready_pods "$1" | wc -l; }
