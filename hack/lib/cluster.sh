# The local cluster of cluster.yaml on this machine: one network namespace per node on a
# bridge, routes between the nodes' pod CIDRs, and the processes hack/up starts (recorded by PID
# in .run/*.pid). Source after common.sh; call load_cluster first.

CLUSTER_FILE="${CLUSTER_FILE:-$ROOT/cluster.yaml}"
BIN="${BIN:-$ROOT/.build/${BUILD_CONFIG:-release}}"
NODE_NAMES=(); declare -A NODE_ADDR NODE_CIDR NODE_LABELS NODE_TAINTS NODE_SSH

# load_cluster: reads cluster.yaml through `ctl cluster render` (which validates it).
load_cluster() {
  local out
  out="$("$BIN/ctl" cluster render -f "$CLUSTER_FILE")" || die "invalid $CLUSTER_FILE"
  while read -r first rest; do
    if [ "$first" = NODE ]; then
      read -r name addr cidr labels taints ssh <<<"$rest"
      NODE_NAMES+=("$name"); NODE_ADDR[$name]="$addr"; NODE_CIDR[$name]="$cidr"
      NODE_LABELS[$name]="$labels"; NODE_TAINTS[$name]="$taints"; NODE_SSH[$name]="$ssh"
    else
      eval "$first"
    fi
  done <<<"$out"
  API_URL="https://$API_ADDRESS:$API_PORT"
  # The registries file is named relative to the cluster file.
  if [ "${REGISTRIES_FILE:--}" != - ]; then
    # Relative to the cluster file; hack/up's copy in RUN_DIR records where the original was.
    local base; base="$(cd "$(dirname "$CLUSTER_FILE")" && pwd)"
    [ -f "$base/cluster.dir" ] && [ "$(basename "$CLUSTER_FILE")" = cluster.yaml ] && base="$(cat "$base/cluster.dir")"
    case "$REGISTRIES_FILE" in /*) ;; *) REGISTRIES_FILE="$base/$REGISTRIES_FILE";; esac
    [ -f "$REGISTRIES_FILE" ] || die "$CLUSTER_FILE: registry.registries: $REGISTRIES_FILE does not exist"
  fi
}

netns_of() { echo "orch-$CLUSTER_NAME-$1"; }       # a node's network namespace
veth_of() { echo "ov-$(echo -n "$CLUSTER_NAME-$1" | md5sum | cut -c1-10)"; }   # host side, <= 15 chars

# net_up: the bridge with the control plane's address, each node's namespace with a veth into
# it, forwarding inside nodes, and routes to every node's pod CIDR (in nodes and on the host).
net_up() {
  local prefix="${BRIDGE_CIDR#*/}"
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$API_ADDRESS/$prefix" dev "$BRIDGE"
  fi
  ip link set "$BRIDGE" up
  for n in "${NODE_NAMES[@]}"; do
    local ns veth; ns="$(netns_of "$n")"; veth="$(veth_of "$n")"
    ip netns list | grep -qw "$ns" || ip netns add "$ns"
    if ! ip link show "$veth" >/dev/null 2>&1; then
      ip link add "$veth" type veth peer name eth0 netns "$ns"
      ip link set "$veth" master "$BRIDGE"
      ip -n "$ns" addr add "${NODE_ADDR[$n]}/$prefix" dev eth0
    fi
    ip link set "$veth" up
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route replace default via "$API_ADDRESS"
    ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1
    for m in "${NODE_NAMES[@]}"; do
      [ "$m" = "$n" ] && continue
      ip -n "$ns" route replace "${NODE_CIDR[$m]}" via "${NODE_ADDR[$m]}"
    done
    ip route replace "${NODE_CIDR[$n]}" via "${NODE_ADDR[$n]}"
  done
  # This host reaches ClusterIPs through the first node's proxy (any node would do).
  ip route replace "$SERVICE_CIDR" via "${NODE_ADDR[${NODE_NAMES[0]}]}"
}

# node_link up|down NAME: the node's cable (chaos: partition and kill).
node_link() { ip link set "$(veth_of "$2")" "$1"; }

# start_bg NAME CMD...: starts a component unless its PID file names a live process.
start_bg() {
  local name="$1"; shift
  if [ -f "$RUN_DIR/$name.pid" ] && kill -0 "$(cat "$RUN_DIR/$name.pid")" 2>/dev/null; then
    log "$name already running (pid $(cat "$RUN_DIR/$name.pid"))"; return
  fi
  log "starting $name"
  nohup "$@" >>"$RUN_DIR/$name.log" 2>&1 &
  echo $! >"$RUN_DIR/$name.pid"
}

# With controlPlane.store etcd: one etcd member on the control plane's address (client 2379,
# peer 2380), mutual TLS with its own CA in DATA_DIR/pki/etcd, data in RUN_DIR/etcd.
ETCD_PKI="$RUN_DIR/data/pki/etcd"
etcdctl_run() {
  ETCDCTL_API=3 etcdctl --endpoints "https://$API_ADDRESS:2379" --cacert "$ETCD_PKI/ca.crt" \
    --cert "$ETCD_PKI/apiserver-etcd-client.crt" --key "$ETCD_PKI/apiserver-etcd-client.key" "$@"
}
start_etcd() {
  "$BIN/ctl" cluster etcd-certs --dir "$ETCD_PKI" --address "$API_ADDRESS" >/dev/null
  start_bg etcd etcd --name "$CLUSTER_NAME-cp" --data-dir "$RUN_DIR/etcd" \
    --listen-client-urls "https://$API_ADDRESS:2379" --advertise-client-urls "https://$API_ADDRESS:2379" \
    --listen-peer-urls "https://$API_ADDRESS:2380" --initial-advertise-peer-urls "https://$API_ADDRESS:2380" \
    --initial-cluster "$CLUSTER_NAME-cp=https://$API_ADDRESS:2380" \
    --cert-file "$ETCD_PKI/server.crt" --key-file "$ETCD_PKI/server.key" --trusted-ca-file "$ETCD_PKI/ca.crt" --client-cert-auth \
    --peer-cert-file "$ETCD_PKI/peer.crt" --peer-key-file "$ETCD_PKI/peer.key" --peer-trusted-ca-file "$ETCD_PKI/ca.crt" --peer-client-cert-auth
  wait_for 30 etcdctl_run endpoint health || die "etcd did not become healthy; see $RUN_DIR/etcd.log"
}
start_apiserver() {
  local args=()
  if [ "${STORE:-sqlite}" = etcd ]; then
    start_etcd
    args+=(--etcd-servers "https://$API_ADDRESS:2379" --etcd-cafile "$ETCD_PKI/ca.crt"
           --etcd-certfile "$ETCD_PKI/apiserver-etcd-client.crt" --etcd-keyfile "$ETCD_PKI/apiserver-etcd-client.key")
  fi
  start_bg apiserver "$BIN/apiserver" --data-dir "$RUN_DIR/data" --advertise-address "$API_ADDRESS" --bind-address 0.0.0.0 \
    --secure-port "$API_PORT" --service-cluster-ip-range "$SERVICE_CIDR" "${args[@]}"
}
# start_controller_manager NAME / start_scheduler NAME: NAME lets a standby run beside the leader.
start_controller_manager() {
  start_bg "$1" "$BIN/controller-manager" --kubeconfig "$RUN_DIR/data/controller-manager.kubeconfig" \
    --cluster-signing-cert-file "$RUN_DIR/data/pki/ca.crt" --cluster-signing-key-file "$RUN_DIR/data/pki/ca.key" \
    --node-monitor-grace-period "$NODE_GRACE" --pod-eviction-timeout "$EVICTION_DELAY" --hpa-sync-period "$HPA_SYNC"
}
start_scheduler() { start_bg "$1" "$BIN/scheduler" --kubeconfig "$RUN_DIR/data/scheduler.kubeconfig"; }

# start_agent NAME: the node's agent inside its network namespace (mounts stay in the host's
# mount namespace, so hack/down can find and remove them).
start_agent() {
  local n="$1" args=()
  [ "${NODE_LABELS[$n]}" != - ] && args+=(--node-labels "${NODE_LABELS[$n]}")
  [ "${NODE_TAINTS[$n]}" != - ] && args+=(--register-with-taints "${NODE_TAINTS[$n]}")
  [ "${REGISTRIES_FILE:--}" != - ] && args+=(--registries-file "$REGISTRIES_FILE")
  start_bg "agent-$n" nsenter --net="/run/netns/$(netns_of "$n")" "$BIN/agent" --server "$API_URL" \
    --token "$(cat "$RUN_DIR/data/join-token")" --node-name "$n" --data-dir "$RUN_DIR/nodes/$n" --runtime runc \
    --pod-cidr "${NODE_CIDR[$n]}" --node-ip "${NODE_ADDR[$n]}" --insecure-registry "$REGISTRY" \
    --lease-interval "$LEASE_INTERVAL" --cluster-cidr "$CLUSTER_CIDR" --cluster-domain "$CLUSTER_DOMAIN" \
    --no-dns-forward "${args[@]}"
}

# stop_pid NAME [SIGNAL]: stops a component started by start_bg (by its recorded PID).
stop_pid() {
  local f="$RUN_DIR/$1.pid" pid
  [ -f "$f" ] || return 0
  pid="$(cat "$f")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "-${2:-TERM}" "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

# kill_node_containers NAME: SIGKILLs every container and shim of the node (runc state under
# the node's data dir), as when the machine dies.
kill_node_containers() {
  local root="$RUN_DIR/nodes/$1/runc" id pid
  [ -d "$root" ] || return 0
  for id in $(runc --root "$root" list -q 2>/dev/null); do
    runc --root "$root" kill --all "$id" KILL 2>/dev/null || true
  done
  for pid in $(pgrep -f "orch-shim $(command -v runc) $root " 2>/dev/null || true); do kill -KILL "$pid" 2>/dev/null || true; done
}

# clean_node NAME: removes what the node's agent left: containers, overlay mounts, pod
# namespaces, cgroups.
clean_node() {
  local n="$1" root="$RUN_DIR/nodes/$1" id
  kill_node_containers "$n"
  for id in $(runc --root "$root/runc" list -q 2>/dev/null); do runc --root "$root/runc" delete --force "$id" 2>/dev/null || true; done
  awk -v t="$root/" 'index($5, t) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  for d in "$root"/pods/*/; do
    [ -d "$d" ] || continue
    local uid; uid="$(basename "$d")"
    ip netns list | grep -qw "orch-$uid" && ip netns delete "orch-$uid" 2>/dev/null || true
  done
  for h in /sys/fs/cgroup/*/orchestrator/"$n" /sys/fs/cgroup/unified/orchestrator/"$n"; do
    [ -d "$h" ] && find "$h" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
}

# net_down: the namespaces, veths, routes and bridge of net_up.
net_down() {
  for n in "${NODE_NAMES[@]}"; do
    ip route del "${NODE_CIDR[$n]}" 2>/dev/null || true
    ip route del "$SERVICE_CIDR" 2>/dev/null || true
    ip link del "$(veth_of "$n")" 2>/dev/null || true
    ip netns delete "$(netns_of "$n")" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
}
