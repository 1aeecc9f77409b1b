# Shared helpers for hack/ scripts. Source it: . "$(dirname "$0")/lib/common.sh"
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RUN_DIR="${RUN_DIR:-$ROOT/.run}"
export PATH="/opt/swift/usr/bin:$PATH"

log() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Installs the Debian packages the cluster and its tests need, only those missing.
ensure_packages() {
  local want=(libsqlite3-dev zlib1g-dev runc containernetworking-plugins docker-registry umoci skopeo busybox-static iproute2 nftables conntrack curl etcd-server etcd-client)
  local missing=()
  for p in "${want[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "run as root to install: ${missing[*]}"
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# SwiftPM's build directory, for root, in a cache outside the clone: a fresh clone at the same
# path (as CI makes) compiles its own sources again but not the dependencies (swift-nio, gRPC,
# BoringSSL...). An existing .build (directory or link) is left as it is.
BUILD_CACHE_ROOT="${BUILD_CACHE_ROOT:-/var/cache/orchestrator/swiftpm}"
use_build_cache() {
  [ "$(id -u)" = 0 ] && [ ! -e "$ROOT/.build" ] && [ ! -L "$ROOT/.build" ] || return 0
  local dir; dir="$BUILD_CACHE_ROOT/$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
  mkdir -p "$dir" && ln -s "$dir" "$ROOT/.build" && log "build directory: .build -> $dir (kept for the next clone at $ROOT)"
}

# swift build with the given arguments; if it fails in a cached build directory (say, left
# half-written by an interrupted build), once more in an emptied one.
swift_build() {
  if swift build "$@"; then return 0; fi
  if [ -L "$ROOT/.build" ]; then
    log "the build failed in the cached build directory $(readlink "$ROOT/.build"); building again from nothing"
    find "$(readlink "$ROOT/.build")" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
    swift build "$@"
  else
    return 1
  fi
}

# Polls a command until it succeeds or the deadline (seconds) passes.
wait_for() {
  local deadline=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
