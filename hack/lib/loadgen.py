#!/usr/bin/env python3
"""Bounded HTTP load for the autoscaling tests: RATE requests per second for DURATION seconds,
sent to a Service's URL (--url, its cluster IP: the cluster's proxy spreads it over the pods) or
spread round-robin over the Ready pods of a label selector (refreshed every second through ctl).
Only addresses in 198.18.0.0/15 are contacted. Prints one line per second: time, sent, ok, pods."""
import argparse, ipaddress, json, subprocess, sys, threading, time, urllib.parse, urllib.request

p = argparse.ArgumentParser()
p.add_argument("--ctl", required=True)
p.add_argument("--selector", required=True)
p.add_argument("--url", help="send every request here (a Service's cluster IP) instead of to pod IPs")
p.add_argument("--path", default="/cgi-bin/burn")
p.add_argument("--port", type=int, default=8080)
p.add_argument("--rate", type=float, required=True)
p.add_argument("--duration", type=float, required=True)
p.add_argument("--threads", type=int, default=16)
a = p.parse_args()
allowed = ipaddress.ip_network("198.18.0.0/15")
if a.url:
    host = urllib.parse.urlparse(a.url).hostname or ""
    if ipaddress.ip_address(host) not in allowed:
        sys.exit(f"--url: {host} is outside 198.18.0.0/15")

ips, lock = [], threading.Lock()
def refresh():
    out = subprocess.run([a.ctl, "get", "pods", "-l", a.selector, "-o", "json"], capture_output=True, text=True).stdout
    found = []
    for pod in json.loads(out or '{"items":[]}')["items"]:
        st = pod.get("status", {})
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions", []))
        ip = st.get("podIP")
        if ready and ip and ipaddress.ip_address(ip) in allowed and not pod["metadata"].get("deletionTimestamp"):
            found.append(ip)
    with lock:
        ips[:] = found

sent = ok = 0
counter = threading.Lock()
slots = threading.Semaphore(0)
stop = time.time() + a.duration

def worker():
    global ok
    i = 0
    while time.time() < stop:
        if not slots.acquire(timeout=0.5):
            continue
        with lock:
            if not ips:
                continue
            ip = ips[i % len(ips)]
        i += 1
        url = a.url or f"http://{ip}:{a.port}{a.path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                r.read()
            with counter:
                ok += 1
        except Exception:
            pass

threads = [threading.Thread(target=worker, daemon=True) for _ in range(a.threads)]
for t in threads: t.start()
start = time.time(); next_refresh = 0; released = 0
while time.time() < stop:
    now = time.time()
    if now >= next_refresh:
        refresh(); next_refresh = now + 1
        print(f"{now - start:.0f}s sent={sent} ok={ok} pods={len(ips)}", flush=True)
    due = int((now - start) * a.rate)
    while released < due:
        slots.release(); released += 1; sent += 1
    time.sleep(0.01)
