#!/usr/bin/env python3
# Watches the node Leases (kube-node-lease) and records, per node, the largest gap between two
# successive renewals (spec.renewTime), which is what a node grace period must exceed to give
# no false NotReady. Runs until the file STOP exists or SECONDS have passed (bounded), then
# writes "NODE GAP_SECONDS RENEWALS" lines to OUT.
# Usage: lease-gaps.py KUBECONFIG OUT STOP SECONDS
import base64, datetime, http.client, json, os, ssl, sys, tempfile, time, urllib.parse
import yaml

kubeconfig, out, stop, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
cfg = yaml.safe_load(open(kubeconfig))
cluster, user = cfg["clusters"][0]["cluster"], cfg["users"][0]["user"]
tmp = tempfile.mkdtemp()
for name, field in (("ca", "certificate-authority-data"), ("crt", "client-certificate-data"), ("key", "client-key-data")):
    with open(os.path.join(tmp, name), "wb") as f:
        f.write(base64.b64decode(cluster[field] if name == "ca" else user[field]))
ctx = ssl.create_default_context(cafile=os.path.join(tmp, "ca"))
ctx.load_cert_chain(os.path.join(tmp, "crt"), os.path.join(tmp, "key"))
url = urllib.parse.urlparse(cluster["server"])
end = time.monotonic() + seconds
last, gaps, renewals = {}, {}, {}


def parse(ts):
    return datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def watch():
    conn = http.client.HTTPSConnection(url.hostname, url.port or 443, context=ctx, timeout=5)
    conn.request("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases?watch=1",
                 headers={"Accept": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise OSError("watch answered %d" % resp.status)
    while time.monotonic() < end and not os.path.exists(stop):
        line = resp.readline()   # one event per line; http.client undoes the chunked framing
        if not line:
            return
        try:
            obj = json.loads(line).get("object", {})
        except ValueError:
            continue
        node, ts = obj.get("metadata", {}).get("name"), (obj.get("spec") or {}).get("renewTime")
        if not node or not ts:
            continue
        t = parse(ts)
        if node in last and t > last[node]:
            gaps[node] = max(gaps.get(node, 0.0), t - last[node])
            renewals[node] = renewals.get(node, 0) + 1
        last[node] = max(t, last.get(node, t))


while time.monotonic() < end and not os.path.exists(stop):
    try:
        watch()
    except (OSError, ssl.SSLError, http.client.HTTPException):
        time.sleep(0.5)
with open(out, "w") as f:
    for node in sorted(last):
        f.write("%s %.2f %d\n" % (node, gaps.get(node, 0.0), renewals.get(node, 0)))
