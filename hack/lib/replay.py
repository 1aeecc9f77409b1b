#!/usr/bin/env python3
"""Replays a traffic trace (CSV seconds,requests_per_second) through a Service on a running
cluster, once per mode (reactive, then predictive), each on its own Deployment, Service and HPA
(replay-reactive, replay-predictive) with everything else the same. Time is compressed by
--compress C: a trace minute lasts 60/C seconds, and the HPA's windows are divided by C alike
(scale-down stabilization 300/C s, scale-up period 15/C s, at least 1 s each); the sync period
and the metrics interval are the cluster's (1 s on hack/test-cluster.yaml) and pods start in
real time. The predictive run first imports the trace's days before the replayed window as the
workload's history (ctl top --history import), compressed the same way.

The request rate is the trace's, scaled so that the window's peak needs --peak-fraction of
--max pods at the target (the cost of a request is measured first, on the reactive
Deployment). Every request's latency and outcome is recorded; every second the replicas, Ready
pods and the HPA's utilization. Writes OUT/compare.csv (one row per figure), OUT/curve.csv and
OUT/compare.svg, and prints the table. Bounded: the window's length / C per mode, plus a minute
of warm-up and settling each. Only 198.18.0.0/15 addresses are contacted."""
import argparse, csv, ipaddress, json, math, os, subprocess, sys, threading, time, urllib.request

p = argparse.ArgumentParser()
p.add_argument("--ctl", required=True)
p.add_argument("--trace", required=True)
p.add_argument("--from-seconds", type=float, help="start of the replayed window in trace seconds (default: the last day)")
p.add_argument("--to-seconds", type=float, help="end of the window (default: the trace's end)")
p.add_argument("--compress", type=float, default=60)
p.add_argument("--history-days", type=float, default=2)
p.add_argument("--min", type=int, default=1)
p.add_argument("--max", type=int, default=10)
p.add_argument("--target", type=int, default=50)
p.add_argument("--lookahead", default="", help="the predictive HPA's lookahead annotation (real time); default none: the controller measures its pods' start-up")
p.add_argument("--peak-fraction", type=float, default=0.7)
p.add_argument("--image", required=True)
p.add_argument("--out", required=True)
p.add_argument("--modes", default="reactive,predictive")
p.add_argument("--threads", type=int, default=48)
a = p.parse_args()
C = a.compress
ALLOWED = ipaddress.ip_network("198.18.0.0/15")


def log(msg):
    print(f"==> {msg}", file=sys.stderr, flush=True)


def ctl(*args, stdin=None, check=True):
    r = subprocess.run([a.ctl, *args], input=stdin, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise SystemExit(f"ctl {' '.join(args)}: {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout


def get_json(*args):
    out = ctl("get", *args, "-o", "json", check=False)
    try:
        return json.loads(out)
    except ValueError:
        return {}


# --- the trace -------------------------------------------------------------------------------
rows = []
with open(a.trace) as f:
    r = csv.reader(f)
    head = next(r)
    if [h.strip() for h in head[:2]] != ["seconds", "requests_per_second"]:
        raise SystemExit(f"{a.trace}: line 1: the header must be seconds,requests_per_second")
    for n, row in enumerate(r, start=2):
        try:
            t, v = float(row[0]), float(row[1])
        except (ValueError, IndexError):
            raise SystemExit(f"{a.trace}: line {n}: two numbers expected, got {row}")
        if v < 0 or (rows and t <= rows[-1][0]):
            raise SystemExit(f"{a.trace}: line {n}: times must increase and rates be non-negative")
        rows.append((t, v))
if len(rows) < 2:
    raise SystemExit(f"{a.trace}: fewer than two rows")
end = a.to_seconds if a.to_seconds is not None else rows[-1][0]
start = a.from_seconds if a.from_seconds is not None else max(rows[0][0], end - 86400)
if not (rows[0][0] <= start < end <= rows[-1][0]):
    raise SystemExit(f"--from-seconds/--to-seconds must lie within the trace ({rows[0][0]:.0f}..{rows[-1][0]:.0f})")


def rate_at(t):
    lo, hi = 0, len(rows) - 1
    if t <= rows[0][0]:
        return rows[0][1]
    if t >= rows[-1][0]:
        return rows[-1][1]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if rows[mid][0] <= t:
            lo = mid
        else:
            hi = mid
    (t0, v0), (t1, v1) = rows[lo], rows[hi]
    return v0 + (v1 - v0) * (t - t0) / (t1 - t0)


peak = max(v for t, v in rows if start <= t <= end)
window_real = (end - start) / C
log(f"trace {a.trace}: window {start/3600:.2f} h..{end/3600:.2f} h (peak {peak:.1f} requests/s), compressed {C:g}x: {window_real:.0f} s per mode")

# --- the workload ----------------------------------------------------------------------------
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "manifests", "worker.yaml")


def manifests(name, predictive, lo=None, hi=None):
    """manifests/worker.yaml's Deployment (the CPU-costly CGI), with its own Service and HPA."""
    import yaml
    docs = [d for d in yaml.safe_load_all(open(WORKER)) if d]
    dep = next(d for d in docs if d["kind"] == "Deployment")
    dep["metadata"] = {"name": name, "labels": {"app": name}}
    dep["spec"]["replicas"] = lo or a.min
    dep["spec"]["selector"] = {"matchLabels": {"app": name}}
    dep["spec"]["template"]["metadata"] = {"labels": {"app": name}}
    for c in dep["spec"]["template"]["spec"]["containers"]:
        c["image"] = a.image
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
           "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}
    per, down = max(1, round(15 / C)), max(1, round(300 / C))
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": name},
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                    "minReplicas": lo or a.min, "maxReplicas": hi or a.max,
                    "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": a.target}}}],
                    "behavior": {"scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                                             "policies": [{"type": "Percent", "value": 100, "periodSeconds": per}, {"type": "Pods", "value": 4, "periodSeconds": per}]},
                                 "scaleDown": {"stabilizationWindowSeconds": down, "policies": [{"type": "Percent", "value": 100, "periodSeconds": per}]}}}}
    if predictive:
        hpa["metadata"]["annotations"] = {"autoscaling.orchestrator.io/predictive": "true",
                                          "autoscaling.orchestrator.io/predictive-time-compression": f"{C:g}"}
        if a.lookahead:
            hpa["metadata"]["annotations"]["autoscaling.orchestrator.io/predictive-lookahead"] = a.lookahead
    return "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in (dep, svc, hpa))


def status(name):
    d = get_json("deployment", name)
    h = get_json("hpa", name)
    util = None
    for m in (h.get("status", {}).get("currentMetrics") or []):
        util = m.get("resource", {}).get("current", {}).get("averageUtilization", util)
    return d.get("spec", {}).get("replicas", 0), d.get("status", {}).get("readyReplicas", 0) or 0, util


def cluster_ip(name):
    ip = get_json("service", name).get("spec", {}).get("clusterIP", "")
    if not ip or ipaddress.ip_address(ip) not in ALLOWED:
        raise SystemExit(f"service {name}: cluster IP {ip!r} is not in {ALLOWED}")
    return ip


def wait(what, check, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if check():
            return True
        time.sleep(0.5)
    raise SystemExit(f"timed out after {seconds} s: {what}")


# --- load ------------------------------------------------------------------------------------
class Load:
    """Requests at a rate that rate_fn(elapsed) sets; every request's (sent, latency, ok)."""
    def __init__(self, url, rate_fn, duration):
        self.url, self.rate_fn, self.duration = url, rate_fn, duration
        self.results, self.lock = [], threading.Lock()
        self.slots = threading.Semaphore(0)
        self.stop = False

    def worker(self):
        while not self.stop:
            if not self.slots.acquire(timeout=0.2):
                continue
            t = time.time()
            ok = False
            try:
                with urllib.request.urlopen(self.url, timeout=5) as r:
                    ok = r.status == 200 and r.read().strip() == b"burned"
            except Exception:
                ok = False
            with self.lock:
                self.results.append((t - self.t0, time.time() - t, ok))

    def run(self):
        self.t0 = time.time()
        threads = [threading.Thread(target=self.worker, daemon=True) for _ in range(a.threads)]
        for th in threads:
            th.start()
        due = 0.0
        last = self.t0
        while True:
            now = time.time()
            el = now - self.t0
            if el >= self.duration:
                break
            due += self.rate_fn(el) * (now - last)
            last = now
            while due >= 1:
                self.slots.release()
                due -= 1
            time.sleep(0.01)
        self.stop = True
        for th in threads:
            th.join(7)
        return self.results


def sample_loop(name, stop_flag, out, t0):
    while not stop_flag.is_set():
        reps, ready, util = status(name)
        out.append((time.time() - t0, reps, ready, util))
        stop_flag.wait(1)


# --- calibration: the cost of a request ------------------------------------------------------
modes = [m.strip() for m in a.modes.split(",") if m.strip()]
for m in modes:
    if m not in ("reactive", "predictive"):
        raise SystemExit(f"--modes: unknown mode {m}")
os.makedirs(a.out, exist_ok=True)
for m in modes:
    ctl("delete", "hpa", f"replay-{m}", check=False)
    ctl("delete", "deployment", f"replay-{m}", check=False)
    ctl("delete", "service", f"replay-{m}", check=False)

cal = "replay-reactive"
ctl("apply", "-f", "-", stdin=manifests(cal, False, lo=2, hi=2))
wait("2 Ready replicas of the calibration", lambda: status(cal)[1] == 2, 180)
url = f"http://{cluster_ip(cal)}/cgi-bin/burn"
cal_rate = 6.0
log(f"measuring a request's cost: {cal_rate:g} requests/s on 2 pods for 25 s")
samples = []
flag = threading.Event()
th = threading.Thread(target=sample_loop, args=(cal, flag, samples, time.time()), daemon=True)
th.start()
res = Load(url, lambda el: cal_rate, 25).run()
flag.set(); th.join(3)
utils = [u for t, r, rd, u in samples if t >= 12 and u is not None]
if not utils or not any(ok for _, _, ok in res):
    raise SystemExit(f"calibration failed: utilization samples {utils}, {sum(ok for _, _, ok in res)} of {len(res)} requests answered")
k = (sum(utils) / len(utils)) * 2 / cal_rate          # % of one pod's request per request/s
scale = a.peak_fraction * a.max * a.target / k / peak   # requests/s sent per trace request/s
log(f"a request/s costs {k:.1f} % of a pod's cpu request; sending {scale:.3f} x the trace's rate (peak {peak * scale:.1f}/s)")


def replay_rate(el):
    return rate_at(start + el * C) * scale


# --- one run per mode ------------------------------------------------------------------------
results = {}
curves = {}
for m in modes:
    name = f"replay-{m}"
    ctl("apply", "-f", "-", stdin=manifests(name, m == "predictive"))
    if m == "predictive":
        # The days before the window, compressed, as the workload's history: the demand the
        # trace implies, on the pods that would have carried it at the target.
        now = time.time()
        lines = ["timestamp,pods,cpu_utilization_percent"]
        h0 = start - a.history_days * 86400
        t = max(rows[0][0], h0)
        step = 60.0
        while t < start:
            demand = rate_at(t) * scale * k                      # % of one pod's request
            pods = min(a.max, max(a.min, math.ceil(demand / a.target)))
            ts = now - (start - t) / C - 2
            lines.append(f"{ts:.3f},{pods},{demand / pods:.1f}")
            t += step
        hist = os.path.join(a.out, "history.csv")
        open(hist, "w").write("\n".join(lines) + "\n")
        log(f"{name}: importing {len(lines) - 1} history samples ({(start - max(rows[0][0], h0)) / 3600:.0f} trace hours, compressed)")
        print(ctl("top", "--history", "import", f"deployment/{name}", "--csv", hist).strip(), file=sys.stderr)
    # Warm up at the window's first rate until the HPA has settled (bounded).
    url = f"http://{cluster_ip(name)}/cgi-bin/burn"
    wait(f"{name}: a Ready replica", lambda: status(name)[1] >= 1, 180)
    log(f"{name}: warming up for 30 s at the window's first rate")
    Load(url, lambda el: replay_rate(0), 30).run()
    log(f"{name}: replaying {window_real:.0f} s")
    samples = []
    flag = threading.Event()
    t0 = time.time()
    th = threading.Thread(target=sample_loop, args=(name, flag, samples, t0), daemon=True)
    th.start()
    res = Load(url, replay_rate, window_real).run()
    flag.set(); th.join(3)
    curves[m] = samples
    lat = sorted(l for _, l, ok in res if ok)
    failed = sum(1 for _, _, ok in res if not ok)
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")
    dt = [samples[i + 1][0] - samples[i][0] for i in range(len(samples) - 1)]
    over = sum(d for d, s in zip(dt, samples) if s[3] is not None and s[3] > a.target)
    pod_s = sum(d * s[1] for d, s in zip(dt, samples))
    reps = [s[1] for s in samples]
    ups = sum(1 for x, y in zip(reps, reps[1:]) if y > x)
    downs = sum(1 for x, y in zip(reps, reps[1:]) if y < x)
    changes, last = 0, 0
    for x, y in zip(reps, reps[1:]):
        d = (y > x) - (y < x)
        if d and last and d != last:
            changes += 1
        if d:
            last = d
    results[m] = {"overloaded_s": over, "overloaded_trace_s": over * C, "requests": len(res), "failed": failed,
                  "p50_ms": pct(0.5), "p99_ms": pct(0.99), "pod_seconds": pod_s, "scale_ups": ups, "scale_downs": downs,
                  "direction_changes": changes, "max_replicas": max(reps) if reps else 0}
    log(f"{name}: {results[m]}")
    if m == "predictive":
        # What the forecast last said, with the lookahead it used and where that came from.
        conds = get_json("hpa", name).get("status", {}).get("conditions") or []
        log(f"{name}: PredictiveScaling: " + next((c.get("message", "") for c in conds if c.get("type") == "PredictiveScaling"), "(none)"))
    for kind in ("hpa", "deployment", "service"):
        ctl("delete", kind, name, check=False)

# --- report ----------------------------------------------------------------------------------
keys = ["overloaded_s", "overloaded_trace_s", "requests", "failed", "p50_ms", "p99_ms", "pod_seconds", "scale_ups", "scale_downs", "direction_changes", "max_replicas"]
with open(os.path.join(a.out, "compare.csv"), "w") as f:
    f.write("figure," + ",".join(modes) + (",predictive_over_reactive" if len(modes) == 2 else "") + "\n")
    for key in keys:
        vals = [results[m][key] for m in modes]
        ratio = ""
        if len(modes) == 2 and vals[0]:
            ratio = f",{vals[1] / vals[0]:.3f}"
        elif len(modes) == 2:
            ratio = ","
        f.write(key + "," + ",".join(f"{v:.1f}" if isinstance(v, float) else str(v) for v in vals) + ratio + "\n")
with open(os.path.join(a.out, "curve.csv"), "w") as f:
    f.write("mode,seconds,trace_seconds,requests_per_second_sent,replicas,ready,cpu_percent\n")
    for m, s in curves.items():
        for t, r, rd, u in s:
            f.write(f"{m},{t:.1f},{start + t * C:.0f},{replay_rate(t):.2f},{r},{rd},{'' if u is None else u}\n")
W, H, L, R, T, B = 960, 380, 60, 70, 40, 40
rmax = max([a.max] + [s[1] for c in curves.values() for s in c])
x = lambda t: L + (W - L - R) * t / max(window_real, 1)
y = lambda v: H - B - (H - T - B) * v / rmax
yd = lambda v: H - B - (H - T - B) * v / (peak * scale * 1.05)
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<line x1="{L}" y1="{H-B}" x2="{W-R}" y2="{H-B}" stroke="black"/><line x1="{L}" y1="{T}" x2="{L}" y2="{H-B}" stroke="black"/>',
       f'<line x1="{W-R}" y1="{T}" x2="{W-R}" y2="{H-B}" stroke="black"/>',
       f'<text x="{L}" y="{T-22}">{os.path.basename(a.trace)}: replicas, reactive (blue) and predictive (red), and the request rate sent (grey, right axis)</text>',
       f'<text x="{L}" y="{T-8}">trace {start/3600:.1f} h to {end/3600:.1f} h, {C:g}x compressed; bottom axis: trace time</text>']
for v in range(0, rmax + 1, max(1, rmax // 5)):
    svg.append(f'<text x="{L-6}" y="{y(v)+4:.1f}" text-anchor="end">{v}</text>')
for i in range(5):
    v = peak * scale * 1.05 * i / 4
    svg.append(f'<text x="{W-R+6}" y="{yd(v)+4:.1f}">{v:.0f}/s</text>')
for i in range(7):
    t = window_real * i / 6
    svg.append(f'<text x="{x(t):.1f}" y="{H-B+16}" text-anchor="middle">{(start + t * C) / 3600 % 24:.1f} h</text>')
pts = [(x(t), yd(replay_rate(t))) for t in [window_real * i / 300 for i in range(301)]]
svg.append('<path d="' + " ".join(("M" if i == 0 else "L") + f"{px:.1f},{py:.1f}" for i, (px, py) in enumerate(pts)) + '" fill="none" stroke="#999" stroke-width="1.5"/>')
for m, color in (("reactive", "#1f77b4"), ("predictive", "#d62728")):
    if m in curves and curves[m]:
        svg.append('<path d="' + " ".join(("M" if i == 0 else "L") + f"{x(t):.1f},{y(r):.1f}" for i, (t, r, rd, u) in enumerate(curves[m])) + f'" fill="none" stroke="{color}" stroke-width="2"/>')
svg.append("</svg>")
open(os.path.join(a.out, "compare.svg"), "w").write("\n".join(svg))

print(f"| figure | " + " | ".join(modes) + (" | predictive / reactive |" if len(modes) == 2 else " |"))
print("|---|" + "---|" * (len(modes) + (1 if len(modes) == 2 else 0)))
for key in keys:
    vals = [results[m][key] for m in modes]
    cells = [f"{v:.1f}" if isinstance(v, float) else str(v) for v in vals]
    if len(modes) == 2:
        cells.append(f"{vals[1] / vals[0]:.2f}" if vals[0] else "-")
    print(f"| {key} | " + " | ".join(cells) + " |")
print(f"wrote {a.out}/compare.csv, {a.out}/curve.csv, {a.out}/compare.svg")
