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
