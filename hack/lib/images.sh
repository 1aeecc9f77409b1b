# Local OCI images for tests and the demo: a busybox image built from busybox-static with umoci,
# served by a docker-registry on 127.0.0.1. Source after common.sh.

# start_registry DIR PORT [ADDRESS]: runs docker-registry (on 127.0.0.1 unless ADDRESS) with
# storage in DIR; prints its PID.
start_registry() {
  local dir="$1" port="$2" addr="${3:-127.0.0.1}"
  mkdir -p "$dir/storage"
  cat >"$dir/config.yml" <<YAML
version: 0.1
log: {level: error}
storage:
  filesystem: {rootdirectory: $dir/storage}
  delete: {enabled: true}
http: {addr: $addr:$port}
YAML
  docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
  echo $!
  wait_for 20 curl -sf "http://$addr:$port/v2/" || { cat "$dir/registry.log" >&2; return 1; }
}

# dynamic_busybox: the path of Debian's dynamically linked busybox, unpacked once from its
# package into a cache outside the clone; empty if it cannot be had (the static one is used).
dynamic_busybox() {
  local cache="${IMAGE_CACHE:-/var/cache/orchestrator}/busybox-dyn"
  if [ ! -x "$cache/bin/busybox" ]; then
    local tmp; tmp="$(mktemp -d)"
    # A machine whose package lists were never fetched finds nothing: fetch them once and retry.
    (cd "$tmp" && apt-get download -qq busybox >/dev/null 2>&1) || { apt-get update -qq >/dev/null 2>&1; (cd "$tmp" && apt-get download -qq busybox >/dev/null 2>&1); } || true
    if ls "$tmp"/busybox_*.deb >/dev/null 2>&1 && dpkg-deb -x "$tmp"/busybox_*.deb "$tmp/x" 2>/dev/null; then
      mkdir -p "$cache/bin" && cp "$tmp/x/bin/busybox" "$cache/bin/busybox"
    fi
    rm -rf "$tmp"
  fi
  [ -x "$cache/bin/busybox" ] && echo "$cache/bin/busybox" || true
}

# build_busybox_image WORKDIR REF: builds a busybox image and pushes it to REF
# (e.g. 127.0.0.1:5000/demo/busybox:1.0) over plain HTTP.
build_busybox_image() {
  local work="$1" ref="$2"
  rm -rf "$work/oci" "$work/bundle"
  umoci init --layout "$work/oci" >/dev/null
  umoci new --image "$work/oci:img" >/dev/null
  umoci unpack --image "$work/oci:img" "$work/bundle" >/dev/null
  local rootfs="$work/bundle/rootfs"
  mkdir -p "$rootfs/bin" "$rootfs/tmp" "$rootfs/etc" "$rootfs/www"
  # Debian's dynamically linked busybox with the glibc it links against, so that name lookups
  # (wget http://web) work: the static build's getaddrinfo crashes without its exact glibc.
  local bb; bb="$(dynamic_busybox)"
  mkdir -p "$rootfs/lib/x86_64-linux-gnu" "$rootfs/lib64"
  if [ -n "$bb" ]; then
    cp "$bb" "$rootfs/bin/busybox"
    for lib in libc.so.6 libresolv.so.2 libnss_dns.so.2 libnss_files.so.2; do cp -L "/lib/x86_64-linux-gnu/$lib" "$rootfs/lib/x86_64-linux-gnu/"; done
    cp -L /lib64/ld-linux-x86-64.so.2 "$rootfs/lib64/"
  else
    cp /bin/busybox "$rootfs/bin/busybox"
  fi
  for app in sh ls cat echo sleep usleep timeout httpd wget mkdir hostname nc nslookup true false env ps kill id rm touch test seq date head tail yes dd grep sed awk ip ifconfig chmod printf tar md5sum stty tty wc cmp stat; do ln -sf busybox "$rootfs/bin/$app"; done
  echo "root:x:0:0:root:/:/bin/sh" >"$rootfs/etc/passwd"
  echo "hosts: files dns" >"$rootfs/etc/nsswitch.conf"
  umoci repack --image "$work/oci:img" "$work/bundle" >/dev/null
  umoci config --image "$work/oci:img" --config.cmd /bin/sh --config.env PATH=/bin >/dev/null
  skopeo copy --quiet --dest-tls-verify=false "oci:$work/oci:img" "docker://$ref" >/dev/null
}
