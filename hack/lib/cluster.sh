# The local cluster of cluster.yaml on this machine: one network namespace per node on a
# bridge, routes between the nodes' pod CIDRs, and the processes hack/up starts (recorded by PID
# in .run/*.pid). Source after common.sh; call load_cluster first.

CLUSTER_FILE="${CLUSTER_FILE:-$ROOT/cluster.yaml}"
BIN="${BIN:-$ROOT/.build/${BUILD_CONFIG:-release}}"
NODE_NAMES=(); declare -A NODE_ADDR NODE_CIDR NODE_LABELS NODE_TAINTS NODE_SSH
# controlPlane.hosts (an HA control plane on etcd): names, addresses, ssh targets.
CP_HOSTS=(); declare -A CP_ADDR CP_HOST_SSH
# Local qemu VMs (controlPlane.hosts[].vm and nodes[].vm, hack/vm): memory (MiB), vCPUs, address.
VM_NAMES=(); declare -A VM_MEMORY VM_CPUS VM_ADDR

# load_cluster: reads cluster.yaml through `ctl cluster render` (which validates it).
# ensure_ctl: a ctl to read cluster files with: BIN's, else any one already built (linked either
# way: this must not relink the one hack/deploy linked with the Swift runtime in), else built.
ensure_ctl() {
  if [ ! -x "$BIN/ctl" ]; then
    local c; for c in "$ROOT/.build/release/ctl" "$ROOT/.build/debug/ctl"; do [ -x "$c" ] && { BIN="$(dirname "$c")"; break; }; done
  fi
  [ -x "$BIN/ctl" ] || (cd "$ROOT" && swift build -c "${BUILD_CONFIG:-release}" --product ctl >&2) || die "could not build ctl"
}

load_cluster() {
  local out
  out="$("$BIN/ctl" cluster render -f "$CLUSTER_FILE")" || die "invalid $CLUSTER_FILE"
  while read -r first rest; do
    if [ "$first" = NODE ]; then
      read -r name addr cidr labels taints ssh <<<"$rest"
      NODE_NAMES+=("$name"); NODE_ADDR[$name]="$addr"; NODE_CIDR[$name]="$cidr"
      NODE_LABELS[$name]="$labels"; NODE_TAINTS[$name]="$taints"; NODE_SSH[$name]="$ssh"
    elif [ "$first" = VM ]; then
      read -r name mem cpus addr <<<"$rest"
      VM_NAMES+=("$name"); VM_MEMORY[$name]="$mem"; VM_CPUS[$name]="$cpus"; VM_ADDR[$name]="$addr"
    elif [ "$first" = CP_HOST ]; then
      read -r name addr ssh <<<"$rest"
      CP_HOSTS+=("$name"); CP_ADDR[$name]="$addr"; CP_HOST_SSH[$name]="$ssh"
    else
      eval "$first"
    fi
  done <<<"$out"
  API_URL="https://$API_ADDRESS:$API_PORT"
  # controlPlane.leaderElection: the scheduler's and controller-manager's flags, or none.
  LE_FLAGS=""
  if [ "${LEADER_ELECTION:--}" != - ]; then
    local le=(); IFS=, read -r -a le <<<"$LEADER_ELECTION"
    LE_FLAGS="--leader-elect-lease-duration ${le[0]} --leader-elect-renew-deadline ${le[1]} --leader-elect-retry-period ${le[2]}"
  fi
  # With control-plane hosts, every apiserver (clients take the comma-separated list).
  if [ ${#CP_HOSTS[@]} -gt 0 ]; then
    API_URL="$(for h in "${CP_HOSTS[@]}"; do printf 'https://%s:%s,' "${CP_ADDR[$h]}" "$API_PORT"; done)"
    API_URL="${API_URL%,}"
  fi
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

# attach_ns NAME ADDRESS: NAME's namespace with a veth into the bridge, ADDRESS on its eth0 and
# the bridge's address as its gateway.
attach_ns() {
  local prefix="${BRIDGE_CIDR#*/}" ns veth; ns="$(netns_of "$1")"; veth="$(veth_of "$1")"
  ip netns list | grep -qw "$ns" || ip netns add "$ns"
  if ! ip link show "$veth" >/dev/null 2>&1; then
    ip link add "$veth" type veth peer name eth0 netns "$ns"
    ip link set "$veth" master "$BRIDGE"
    ip -n "$ns" addr add "$2/$prefix" dev eth0
  fi
  ip link set "$veth" up
  ip -n "$ns" link set lo up
  ip -n "$ns" link set eth0 up
  ip -n "$ns" route replace default via "$API_ADDRESS"
}

# net_up: the bridge with the control plane's address, each node's namespace with a veth into
# it, forwarding inside nodes, and routes to every node's pod CIDR (in nodes and on the host).
net_up() {
  local prefix="${BRIDGE_CIDR#*/}"
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$API_ADDRESS/$prefix" dev "$BRIDGE"
  fi
  ip link set "$BRIDGE" up
  # Control-plane hosts: a namespace each on the bridge (no pods, so no pod routes).
  for h in "${CP_HOSTS[@]}"; do attach_ns "$h" "${CP_ADDR[$h]}"; done
  for n in "${NODE_NAMES[@]}"; do
    local ns; ns="$(netns_of "$n")"
    attach_ns "$n" "${NODE_ADDR[$n]}"
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
# peer 2380), mutual TLS with its own CA in DATA_DIR/pki/etcd, data in RUN_DIR/etcd. With
# controlPlane.hosts: one member per host, inside the host's namespace (see start_cp_host).
ETCD_PKI="$RUN_DIR/data/pki/etcd"
etcd_endpoints() {
  if [ ${#CP_HOSTS[@]} -gt 0 ]; then
    local e; e="$(for h in "${CP_HOSTS[@]}"; do printf 'https://%s:2379,' "${CP_ADDR[$h]}"; done)"; echo "${e%,}"
  else
    echo "https://$API_ADDRESS:2379"
  fi
}
etcdctl_run() {
  ETCDCTL_API=3 etcdctl --endpoints "$(etcd_endpoints)" --cacert "$ETCD_PKI/ca.crt" \
    --cert "$ETCD_PKI/apiserver-etcd-client.crt" --key "$ETCD_PKI/apiserver-etcd-client.key" --dial-timeout 2s --command-timeout 5s "$@"
}
etcd_certs() {
  local a=(--address "$API_ADDRESS")
  for h in "${CP_HOSTS[@]}"; do a+=(--address "${CP_ADDR[$h]}"); done
  "$BIN/ctl" cluster etcd-certs --dir "$ETCD_PKI" "${a[@]}" >/dev/null
}
etcd_tls_flags() {
  echo --cert-file "$ETCD_PKI/server.crt" --key-file "$ETCD_PKI/server.key" --trusted-ca-file "$ETCD_PKI/ca.crt" --client-cert-auth \
    --peer-cert-file "$ETCD_PKI/peer.crt" --peer-key-file "$ETCD_PKI/peer.key" --peer-trusted-ca-file "$ETCD_PKI/ca.crt" --peer-client-cert-auth
}
start_etcd() {
  etcd_certs
  # shellcheck disable=SC2046
  start_bg etcd etcd --name "$CLUSTER_NAME-cp" --data-dir "$RUN_DIR/etcd" \
    --listen-client-urls "https://$API_ADDRESS:2379" --advertise-client-urls "https://$API_ADDRESS:2379" \
    --listen-peer-urls "https://$API_ADDRESS:2380" --initial-advertise-peer-urls "https://$API_ADDRESS:2380" \
    --initial-cluster "$CLUSTER_NAME-cp=https://$API_ADDRESS:2380" $(etcd_tls_flags)
  wait_for 30 etcdctl_run endpoint health || die "etcd did not become healthy; see $RUN_DIR/etcd.log"
}
etcd_client_flags() {  # etcd_client_flags ENDPOINTS
  echo --etcd-servers "$1" --etcd-cafile "$ETCD_PKI/ca.crt" \
    --etcd-certfile "$ETCD_PKI/apiserver-etcd-client.crt" --etcd-keyfile "$ETCD_PKI/apiserver-etcd-client.key"
}
start_apiserver() {
  if [ ${#CP_HOSTS[@]} -gt 0 ]; then start_control_plane_hosts; return; fi
  local args=()
  if [ "${STORE:-sqlite}" = etcd ]; then
    start_etcd
    # shellcheck disable=SC2207
    args+=($(etcd_client_flags "https://$API_ADDRESS:2379"))
  fi
  start_bg apiserver "$BIN/apiserver" --data-dir "$RUN_DIR/data" --advertise-address "$API_ADDRESS" --bind-address 0.0.0.0 \
    --secure-port "$API_PORT" --service-cluster-ip-range "$SERVICE_CIDR" --event-ttl "${EVENT_TTL:-3600}s" "${args[@]}"
}
# api_urls_from HOST: every apiserver URL, HOST's first.
api_urls_from() {
  local u="https://${CP_ADDR[$1]}:$API_PORT" x
  for x in "${CP_HOSTS[@]}"; do [ "$x" = "$1" ] || u="$u,https://${CP_ADDR[$x]}:$API_PORT"; done
  echo "$u"
}
# api_ready: every apiserver answers /readyz.
api_ready() {
  local u
  for u in ${API_URL//,/ }; do curl -skf --max-time 2 "$u/readyz" >/dev/null || return 1; done
}

# An HA control plane (controlPlane.hosts): each host is a namespace on the bridge running an
# etcd member, an apiserver (the first host's data in RUN_DIR/data, the others' in
# RUN_DIR/cp-HOST/data, joined with the first one's server token), a scheduler and a
# controller-manager. Every apiserver talks to its own member first.
cp_data() { if [ "$1" = "${CP_HOSTS[0]}" ]; then echo "$RUN_DIR/data"; else echo "$RUN_DIR/cp-$1/data"; fi; }
in_cp() { local h="$1"; shift; nsenter --net="/run/netns/$(netns_of "$h")" "$@"; }
start_etcd_member() {
  local h="$1" addr="${CP_ADDR[$1]}" peers
  peers="$(for x in "${CP_HOSTS[@]}"; do printf '%s=https://%s:2380,' "$x" "${CP_ADDR[$x]}"; done)"
  mkdir -p "$RUN_DIR/cp-$h"
  # shellcheck disable=SC2046
  start_bg "etcd-$h" nsenter --net="/run/netns/$(netns_of "$h")" etcd --name "$h" --data-dir "$RUN_DIR/cp-$h/etcd" \
    --listen-client-urls "https://$addr:2379" --advertise-client-urls "https://$addr:2379" \
    --listen-peer-urls "https://$addr:2380" --initial-advertise-peer-urls "https://$addr:2380" \
    --initial-cluster "${peers%,}" --initial-cluster-token "$CLUSTER_NAME" --initial-cluster-state new --pre-vote $(etcd_tls_flags)
}
start_cp_apiserver() {
  local h="$1" first="${CP_HOSTS[0]}" eps="https://${CP_ADDR[$1]}:2379" args=()
  for x in "${CP_HOSTS[@]}"; do [ "$x" = "$h" ] || eps="$eps,https://${CP_ADDR[$x]}:2379"; done
  # shellcheck disable=SC2207
  args+=($(etcd_client_flags "$eps"))
  if [ "$h" != "$first" ]; then
    local join="https://${CP_ADDR[$first]}:$API_PORT"
    for x in "${CP_HOSTS[@]}"; do [ "$x" = "$h" ] || [ "$x" = "$first" ] || join="$join,https://${CP_ADDR[$x]}:$API_PORT"; done
    args+=(--join-server "$join" --server-token "@$RUN_DIR/data/server-token")
  fi
  # The host's scheduler and controller-manager use their own apiserver first.
  start_bg "apiserver-$h" nsenter --net="/run/netns/$(netns_of "$h")" "$BIN/apiserver" --data-dir "$(cp_data "$h")" \
    --advertise-address "${CP_ADDR[$h]}" --bind-address "${CP_ADDR[$h]}" --secure-port "$API_PORT" \
    --service-cluster-ip-range "$SERVICE_CIDR" --event-ttl "${EVENT_TTL:-3600}s" --kubeconfig-server "$(api_urls_from "$h")" "${args[@]}"
}
# start_cp_host HOST: everything of one control-plane host (again after cp_host_down).
start_cp_host() {
  local h="$1"
  start_etcd_member "$h"
  start_cp_apiserver "$h"
  wait_for 60 curl -skf --max-time 2 "https://${CP_ADDR[$h]}:$API_PORT/readyz" || { log "apiserver on $h did not become ready; see $RUN_DIR/apiserver-$h.log"; return 1; }
  start_controller_manager "controller-manager-$h" "$h"
  start_scheduler "scheduler-$h" "$h"
}
start_control_plane_hosts() {
  etcd_certs
  # The members of a new etcd cluster wait for each other: start them all, then the rest.
  for h in "${CP_HOSTS[@]}"; do start_etcd_member "$h"; done
  wait_for 60 etcdctl_run endpoint health || die "etcd did not become healthy; see $RUN_DIR/etcd-*.log"
  for h in "${CP_HOSTS[@]}"; do start_cp_host "$h" || die "control-plane host $h did not come up"; done
}
# cp_host_down HOST: the host dies: its link goes down and its processes are SIGKILLed.
cp_host_down() {
  local h="$1"
  node_link down "$h"
  for c in apiserver scheduler controller-manager etcd; do stop_pid "$c-$h" KILL; done
}
cp_host_up() { node_link up "$1"; start_cp_host "$1"; }

# start_controller_manager NAME [HOST] / start_scheduler NAME [HOST]: NAME lets a standby run
# beside the leader; HOST runs it on that control-plane host. Their /metrics endpoints take a free
# loopback port (a standby, or another cluster's, may hold the default one); the log says which.
start_controller_manager() {
  local data="$RUN_DIR/data" pre=()
  if [ -n "${2:-}" ]; then data="$(cp_data "$2")"; pre=(nsenter --net="/run/netns/$(netns_of "$2")"); fi
  start_bg "$1" "${pre[@]}" "$BIN/controller-manager" --kubeconfig "$data/controller-manager.kubeconfig" \
    --cluster-signing-cert-file "$data/pki/ca.crt" --cluster-signing-key-file "$data/pki/ca.key" \
    --node-monitor-grace-period "$NODE_GRACE" --pod-eviction-timeout "$EVICTION_DELAY" --hpa-sync-period "$HPA_SYNC" --metrics-bind-address 127.0.0.1:0 $LE_FLAGS
}
start_scheduler() {
  local data="$RUN_DIR/data" pre=()
  if [ -n "${2:-}" ]; then data="$(cp_data "$2")"; pre=(nsenter --net="/run/netns/$(netns_of "$2")"); fi
  start_bg "$1" "${pre[@]}" "$BIN/scheduler" --kubeconfig "$data/scheduler.kubeconfig" --metrics-bind-address 127.0.0.1:0 $LE_FLAGS
}

# start_agent NAME: the node's agent inside its network namespace (mounts stay in the host's
# mount namespace, so hack/down can find and remove them).
start_agent() {
  local n="$1" args=()
  [ "${NODE_LABELS[$n]}" != - ] && args+=(--node-labels "${NODE_LABELS[$n]}")
  [ "${NODE_TAINTS[$n]}" != - ] && args+=(--register-with-taints "${NODE_TAINTS[$n]}")
  [ "${REGISTRIES_FILE:--}" != - ] && args+=(--registries-file "$REGISTRIES_FILE")
  # AGENT_MEMORY_TRIM_PERIOD (seconds, 0 off): for hack/bench-idle's comparison.
  [ -n "${AGENT_MEMORY_TRIM_PERIOD:-}" ] && args+=(--memory-trim-period "$AGENT_MEMORY_TRIM_PERIOD")
  # With several apiservers, node i starts at apiserver i (mod their count): the load is spread.
  local server="$API_URL" i
  if [ ${#CP_HOSTS[@]} -gt 0 ]; then
    for i in "${!NODE_NAMES[@]}"; do [ "${NODE_NAMES[$i]}" = "$n" ] && server="$(api_urls_from "${CP_HOSTS[$(( i % ${#CP_HOSTS[@]} ))]}")"; done
  fi
  start_bg "agent-$n" nsenter --net="/run/netns/$(netns_of "$n")" "$BIN/agent" --server "$server" \
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
  for h in "${CP_HOSTS[@]}"; do
    ip link del "$(veth_of "$h")" 2>/dev/null || true
    ip netns delete "$(netns_of "$h")" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
}
