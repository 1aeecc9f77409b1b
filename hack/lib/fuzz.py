#!/usr/bin/env python3
"""Mutated requests against an apiserver: every served resource (from discovery, subresources
included), every verb it lists, every body content type and patch type, and odd paths, query
parameters and headers. A request fails the run if the answer is a 5xx, if no answer comes
within --timeout seconds (a hang), or if the connection is dropped without an answer (a crash
shows as that, then as refused connections). Bounded by --requests and --max-seconds.

Only loopback and 198.18.0.0/15 servers are contacted. Prints counts by status, verb and body
kind; writes every failure (method, path, headers, body in base64) to --failures as JSON lines;
exits 1 on any failure."""
import argparse, base64, http.client, ipaddress, json, os, random, socket, ssl, string, sys, tempfile, threading, time, urllib.parse

p = argparse.ArgumentParser()
p.add_argument("--kubeconfig", required=True)
p.add_argument("--requests", type=int, default=100000)
p.add_argument("--max-seconds", type=float, default=1800)
p.add_argument("--threads", type=int, default=8)
p.add_argument("--timeout", type=float, default=15)
p.add_argument("--seed", type=int, default=1)
p.add_argument("--failures", default="fuzz-failures.jsonl")
p.add_argument("--namespace", default="fuzz")
a = p.parse_args()


def load_kubeconfig(path):
    import yaml  # python3-yaml, installed with the cluster's packages
    kc = yaml.safe_load(open(path))
    cluster = kc["clusters"][0]["cluster"]
    user = kc["users"][0]["user"]
    u = urllib.parse.urlparse(cluster["server"])
    host = u.hostname or ""
    try:
        ok = ipaddress.ip_address(host).is_loopback or ipaddress.ip_address(host) in ipaddress.ip_network("198.18.0.0/15")
    except ValueError:
        ok = host == "localhost"
    if not ok:
        sys.exit(f"{path}: server {host} is neither loopback nor in 198.18.0.0/15")
    d = tempfile.mkdtemp(prefix="fuzz-")
    crt, key = os.path.join(d, "c.crt"), os.path.join(d, "c.key")
    open(crt, "wb").write(base64.b64decode(user["client-certificate-data"]))
    open(key, "wb").write(base64.b64decode(user["client-key-data"]))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(crt, key)
    os.unlink(crt); os.unlink(key); os.rmdir(d)
    return host, u.port or 443, ctx


HOST, PORT, CTX = load_kubeconfig(a.kubeconfig)


class Conn:
    def __init__(self):
        self.c = None

    def request(self, method, path, body, headers):
        """(status, body) or raises; a fresh connection after any error."""
        if self.c is None:
            self.c = http.client.HTTPSConnection(HOST, PORT, context=CTX, timeout=a.timeout)
        try:
            self.c.request(method, path, body=body, headers=headers)
            r = self.c.getresponse()
            if r.status == 101 or (r.status == 200 and "watch" in path and r.getheader("Content-Length") is None):
                # A watch stream: the answer is its headers; the stream is not waited for.
                data = b""
                self.c.close(); self.c = None
            else:
                data = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    self.c.close(); self.c = None
            return r.status, data
        except Exception:
            try:
                self.c.close()
            except Exception:
                pass
            self.c = None
            raise


def get_json(path):
    c = Conn()
    s, b = c.request("GET", path, None, {"Accept": "application/json"})
    if s != 200:
        sys.exit(f"discovery: GET {path} answered {s}: {b[:200]!r}")
    return json.loads(b)


# --- discovery -------------------------------------------------------------------------------
resources = []   # (prefix, group, version, name, kind, namespaced, verbs)
for v in get_json("/api")["versions"]:
    for r in get_json(f"/api/{v}")["resources"]:
        resources.append((f"/api/{v}", "", v, r["name"], r.get("kind", ""), r.get("namespaced", False), r.get("verbs", [])))
for g in get_json("/apis")["groups"]:
    for gv in g["versions"]:
        try:
            rl = get_json(f"/apis/{gv['groupVersion']}")
        except SystemExit:
            continue
        for r in rl["resources"]:
            resources.append((f"/apis/{gv['groupVersion']}", g["name"], gv["version"], r["name"], r.get("kind", ""), r.get("namespaced", False), r.get("verbs", [])))
tops = [r for r in resources if "/" not in r[3]]
subs = [r for r in resources if "/" in r[3]]

# --- bodies ----------------------------------------------------------------------------------
SPECS = {
    "Pod": {"spec": {"nodeName": "fuzz-nowhere", "containers": [{"name": "c", "image": "fuzz/none:1", "command": ["sh"], "ports": [{"containerPort": 80}],
                                                               "resources": {"requests": {"cpu": "10m", "memory": "1Mi"}}, "env": [{"name": "A", "value": "b"}]}]}},
    "Deployment": {"spec": {"replicas": 0, "selector": {"matchLabels": {"app": "fuzz"}}, "template": {"metadata": {"labels": {"app": "fuzz"}},
                   "spec": {"nodeName": "fuzz-nowhere", "containers": [{"name": "c", "image": "fuzz/none:1"}]}}}},
    "ReplicaSet": {"spec": {"replicas": 0, "selector": {"matchLabels": {"app": "fuzz"}}, "template": {"metadata": {"labels": {"app": "fuzz"}},
                   "spec": {"nodeName": "fuzz-nowhere", "containers": [{"name": "c", "image": "fuzz/none:1"}]}}}},
    "StatefulSet": {"spec": {"replicas": 0, "serviceName": "fuzz", "selector": {"matchLabels": {"app": "fuzz"}}, "template": {"metadata": {"labels": {"app": "fuzz"}},
                    "spec": {"nodeName": "fuzz-nowhere", "containers": [{"name": "c", "image": "fuzz/none:1"}]}}}},
    "DaemonSet": {"spec": {"selector": {"matchLabels": {"app": "fuzz"}}, "template": {"metadata": {"labels": {"app": "fuzz"}},
                  "spec": {"nodeSelector": {"fuzz": "nowhere"}, "containers": [{"name": "c", "image": "fuzz/none:1"}]}}}},
    "Job": {"spec": {"suspend": True, "template": {"spec": {"restartPolicy": "Never", "nodeName": "fuzz-nowhere", "containers": [{"name": "c", "image": "fuzz/none:1"}]}}}},
    "CronJob": {"spec": {"suspend": True, "schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never", "nodeName": "fuzz-nowhere",
                "containers": [{"name": "c", "image": "fuzz/none:1"}]}}}}}},
    "Service": {"spec": {"selector": {"app": "fuzz"}, "ports": [{"port": 80, "targetPort": 8080}]}},
    "ConfigMap": {"data": {"a": "b"}},
    "Secret": {"stringData": {"a": "b"}, "type": "Opaque"},
    "HorizontalPodAutoscaler": {"spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "fuzz"}, "minReplicas": 1, "maxReplicas": 2,
                                "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]}},
    "PersistentVolumeClaim": {"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}}},
    "Role": {"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]},
    "RoleBinding": {"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "fuzz"}, "subjects": [{"kind": "User", "name": "fuzz"}]},
    "PodDisruptionBudget": {"spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "fuzz"}}}},
    "Lease": {"spec": {"holderIdentity": "fuzz", "leaseDurationSeconds": 10}},
    "EndpointSlice": {"addressType": "IPv4", "endpoints": [{"addresses": ["198.18.255.1"]}], "ports": [{"port": 80}]},
    "Endpoints": {"subsets": [{"addresses": [{"ip": "198.18.255.1"}], "ports": [{"port": 80}]}]},
    "Event": {"involvedObject": {"kind": "Pod", "name": "fuzz"}, "reason": "Fuzz", "message": "fuzz"},
}


def base_object(r, name):
    prefix, group, version, res, kind, namespaced, verbs = r
    o = {"apiVersion": f"{group}/{version}" if group else version, "kind": kind, "metadata": {"name": name, "labels": {"fuzz": "yes"}}}
    if namespaced:
        o["metadata"]["namespace"] = a.namespace
    for k, v in SPECS.get(kind, {}).items():
        o[k] = json.loads(json.dumps(v))
    return o


def rand_string(rng):
    pick = rng.random()
    if pick < 0.3:
        return "".join(rng.choice(string.ascii_lowercase + "-.") for _ in range(rng.randint(0, 20)))
    if pick < 0.5:
        return "".join(chr(rng.randint(1, 0x2FFF)) for _ in range(rng.randint(1, 30)))
    if pick < 0.6:
        return "x" * rng.choice([253, 254, 63, 64, 1000, 70000])
    return rng.choice(["", " ", "..", "/", "%", "\u0000", "${x}", "'", '"', "\\", "-1", "1e400", "NaN", "Infinity", "true", "null",
                       "100m", "1Gi", "-5Gi", "1e3", "0.5", "Always", "Never", "TCP", "SCTP", "v1", "apps/v1", "*", "app=web", "a,b=c"])


def rand_value(rng, depth=0):
    pick = rng.random()
    if pick < 0.2:
        return rand_string(rng)
    if pick < 0.35:
        return rng.choice([0, -1, 1, 2**31, -2**31 - 1, 2**63, -2**63, 2**64, 10**30, 3])
    if pick < 0.45:
        return rng.choice([0.5, -0.0, 1e308, -1e308, 1.0000001])
    if pick < 0.55:
        return rng.choice([True, False])
    if pick < 0.65:
        return None
    if pick < 0.8 and depth < 4:
        return [rand_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if depth < 4:
        return {rand_string(rng): rand_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    return {}


def nodes(o, path=()):
    yield path, o
    if isinstance(o, dict):
        for k, v in o.items():
            yield from nodes(v, path + (k,))
    elif isinstance(o, list):
        for i, v in enumerate(o):
            yield from nodes(v, path + (i,))


def mutate(o, rng):
    """A few random structural mutations; metadata.name and namespace are put back so what is
    created stays in the fuzz namespace under a fuzz- name."""
    keep_name = o.get("metadata", {}).get("name") if isinstance(o.get("metadata"), dict) else None
    keep_ns = o.get("metadata", {}).get("namespace") if isinstance(o.get("metadata"), dict) else None
    for _ in range(rng.randint(1, 4)):
        all_nodes = list(nodes(o))
        path, _v = rng.choice(all_nodes)
        if not path:
            continue
        parent = o
        for k in path[:-1]:
            parent = parent[k]
        last = path[-1]
        op = rng.random()
        if op < 0.5:
            parent[last] = rand_value(rng)
        elif op < 0.7:
            if isinstance(parent, dict):
                del parent[last]
            else:
                parent.pop(last)
        elif op < 0.9:
            target = parent[last]
            if isinstance(target, dict):
                target[rand_string(rng)] = rand_value(rng)
            elif isinstance(target, list):
                target.append(rand_value(rng))
        else:
            parent[last] = [parent[last]] * rng.randint(2, 50)
    md = o.get("metadata")
    if isinstance(md, dict) and keep_name is not None:
        md["name"] = keep_name
        if keep_ns is not None:
            md["namespace"] = keep_ns
        md.pop("generateName", None)
    return o


def deep(n, open_, close):
    return open_ * n + close * n


def body_for(r, name, rng):
    """(bytes, content type, what) for a create, update or patch."""
    o = base_object(r, name)
    pick = rng.random()
    if pick < 0.35:
        o = mutate(o, rng)
    text = json.dumps(o).encode()
    ct = "application/json"
    what = "json"
    pick = rng.random()
    if pick < 0.08:
        text, what = text[: rng.randint(0, max(0, len(text) - 1))], "truncated"
    elif pick < 0.14:
        b = bytearray(text)
        for _ in range(rng.randint(1, 8)):
            if b:
                b[rng.randrange(len(b))] = rng.randrange(256)
        text, what = bytes(b), "flipped"
    elif pick < 0.17:
        text, what = deep(rng.choice([100, 1000, 10000, 100000]), b"[", b"]"), "deep"
    elif pick < 0.19:
        text, what = text.replace(b'"kind"', b'"kind": "X", "kind"', 1), "duplicate-key"
    elif pick < 0.21:
        text, what = b"", "empty"
    elif pick < 0.23:
        text, what = b'{"apiVersion": "' + b"\xff\xfe\xc3\x28" + b'"}', "bad-utf8"
    elif pick < 0.31:
        ct, what = "application/yaml", "yaml"
        text = rng.choice([text, b"a: &a [*a]\n", b"- &a [*a, *a]\n", b"a: !!python/object:os.system 'x'\n", b"\t: x\n",
                           b"apiVersion: v1\nkind: " + r[4].encode() + b"\nmetadata:\n  name: " + name.encode() + b"\n  labels: {a: [b, {c: d}]}\n",
                           b"a: &x {b: 1}\nc: *x\nd: *x\n" * 100, b"---\n---\n", b"%YAML 9.9\n---\na: b\n"])
    elif pick < 0.39:
        ct, what = "application/vnd.kubernetes.protobuf", "protobuf"
        text = b"k8s\x00" + bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
        if rng.random() < 0.3:
            # A tag with a length that runs past the end, or a varint that never ends.
            text = b"k8s\x00" + rng.choice([b"\x0a\xff\xff\xff\xff\x0f", b"\x12" + b"\xff" * 11, b"\x0a\x05ab", b"\x1a\x00\x22\x02{}"])
    elif pick < 0.42:
        ct, what = rng.choice(["text/plain", "application/xml", "", "application/json; charset=latin1", "multipart/form-data"]), "odd-content-type"
    return text, ct, what


def patch_for(r, name, rng):
    kind = rng.choice(["json", "merge", "strategic", "apply-yaml", "apply-json", "bogus"])
    o = mutate(base_object(r, name), rng) if rng.random() < 0.5 else base_object(r, name)
    if kind == "json":
        ops = []
        for _ in range(rng.randint(0, 4)):
            op = rng.choice(["add", "remove", "replace", "move", "copy", "test", "bogus"])
            path = rng.choice(["/metadata/labels/fuzz", "/spec", "/spec/replicas", "/metadata/annotations", "/x/y/z", "", "/", "~", "/metadata/labels/~1", "/spec/containers/-", "/spec/containers/99"])
            d = {"op": op, "path": path}
            if op in ("add", "replace", "test"):
                d["value"] = rand_value(rng)
            if op in ("move", "copy"):
                d["from"] = rng.choice(["/metadata/labels", "/spec", "/nope"])
            ops.append(d if rng.random() < 0.9 else rand_value(rng))
        body = json.dumps(ops if rng.random() < 0.9 else rand_value(rng)).encode()
        ct = "application/json-patch+json"
    elif kind == "merge":
        body, ct = json.dumps(o if rng.random() < 0.8 else rand_value(rng)).encode(), "application/merge-patch+json"
    elif kind == "strategic":
        if rng.random() < 0.3 and isinstance(o, dict):
            o["$patch"] = rng.choice(["delete", "replace", "merge", "bogus"])
            o["$setElementOrder/containers"] = rand_value(rng)
            o["$retainKeys"] = rand_value(rng)
        body, ct = json.dumps(o).encode(), "application/strategic-merge-patch+json"
    elif kind == "apply-yaml":
        body, ct = json.dumps(o).encode(), "application/apply-patch+yaml"
    elif kind == "apply-json":
        body, ct = json.dumps(o).encode(), "application/apply-patch+json"
    else:
        body, ct = json.dumps(o).encode(), "application/bogus-patch+json"
    if rng.random() < 0.1:
        body = body[: rng.randint(0, max(0, len(body) - 1))]
    return body, ct, "patch-" + kind


QUERY_KEYS = ["labelSelector", "fieldSelector", "limit", "continue", "resourceVersion", "resourceVersionMatch", "timeoutSeconds",
              "allowWatchBookmarks", "dryRun", "fieldManager", "force", "fieldValidation", "propagationPolicy", "gracePeriodSeconds",
              "orphanDependents", "pretty", "sendInitialEvents", "container", "tailLines", "sinceSeconds", "follow", "previous", "command", "stdout"]
QUERY_VALUES = ["", "a", "-1", "0", "1", "99999999999999999999", "abc", "a=b", "a!=b,c in (d,e)", "a in (", "!a", "metadata.name=x",
                "spec.nodeName=", "metadata.namespace==y", "bogus=1", "All", "Exact", "NotOlderThan", "true", "false", "Foreground",
                "Orphan", "Background", "Strict", "Warn", "Ignore", "eyJ2IjoxfQ", "%ZZ", "\u00e9", "x" * 5000, "1.5", "1e3"]

ACCEPTS = ["application/json", "application/yaml", "application/vnd.kubernetes.protobuf", "application/json;as=Table;v=v1;g=meta.k8s.io",
           "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io", "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
           "application/vnd.kubernetes.protobuf;stream=watch", "text/html", "*/*", "", "application/json;as=Bogus;v=v9;g=x"]
NAMES = ["", "..", ".", "%2e%2e", "a%2Fb", "%00", "x" * 300, "UPPER", "fuzz-" + "\u00e9", "a b", "-", "fuzz-%25", "~", "a:b", "a@b"]


def one(rng):
    """A request: (method, path, body, headers, verb, what)."""
    r = rng.choice(tops) if rng.random() < 0.8 or not subs else rng.choice(subs)
    prefix, group, version, res, kind, namespaced, verbs = r
    base_res, _, sub = res.partition("/")
    ns = a.namespace if rng.random() < 0.9 else rng.choice(["default", "kube-system", "nope", "", "..", "A"])
    coll = f"{prefix}/namespaces/{ns}/{base_res}" if namespaced else f"{prefix}/{base_res}"
    name = f"fuzz-{rng.randrange(200)}" if rng.random() < 0.9 else rng.choice(NAMES)
    item = f"{coll}/{urllib.parse.quote(name, safe='%') if '%' not in name else name}" + (f"/{sub}" if sub else "")
    verb = rng.choice(verbs + ["bogus"]) if verbs else "get"
    headers = {"Accept": rng.choice(ACCEPTS) if rng.random() < 0.3 else "application/json"}
    query = {}
    if rng.random() < 0.4:
        for _ in range(rng.randint(1, 3)):
            query[rng.choice(QUERY_KEYS)] = rng.choice(QUERY_VALUES)
    body, what, method, path = None, "-", "GET", item
    if verb == "list":
        path = coll
    elif verb == "watch":
        query["watch"] = "true"
        query["timeoutSeconds"] = "1"   # always bounded: the answer is the headers anyway
        path = coll if rng.random() < 0.7 else item
    elif verb == "get":
        path = item
    elif verb == "create":
        method, path = "POST", (coll if not sub else item)
        body, ct, what = body_for(r, name, rng)
        headers["Content-Type"] = ct
    elif verb == "update":
        method = "PUT"
        body, ct, what = body_for(r, name, rng)
        headers["Content-Type"] = ct
    elif verb == "patch":
        method = "PATCH"
        body, ct, what = patch_for(r, name, rng)
        headers["Content-Type"] = ct
        if ct.startswith("application/apply-patch") and rng.random() < 0.8:
            query.setdefault("fieldManager", "fuzz")
    elif verb == "delete":
        method = "DELETE"
        if rng.random() < 0.5:
            body = json.dumps(rng.choice([{"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": rand_value(rng)},
                                          {"propagationPolicy": rand_string(rng)}, {"preconditions": {"uid": rand_string(rng)}}, rand_value(rng)])).encode()
            headers["Content-Type"] = "application/json"
            what = "delete-options"
    elif verb == "deletecollection":
        method, path = "DELETE", coll
        query.setdefault("labelSelector", "fuzz=yes")
    else:
        method = rng.choice(["OPTIONS", "HEAD", "TRACE", "CONNECT", "PROPFIND", "POST"])
        if method == "POST":
            body, ct, what = body_for(r, name, rng)
            headers["Content-Type"] = ct
    if rng.random() < 0.03:
        # (Not Content-Length or Transfer-Encoding: a framing that promises more body than is
        # sent makes any server wait for it.)
        headers[rng.choice(["Content-Encoding", "Impersonate-User", "Impersonate-Group", "Authorization", "X-Remote-User", "Upgrade", "X-Stream-Protocol-Version"])] = \
            rng.choice(["gzip", "deflate", "-1", "system:admin", "system:masters", "Bearer x", "SPDY/3.1", "websocket", "v4.channel.k8s.io"])
        if "Impersonate-User" in headers or "Impersonate-Group" in headers:
            headers["Impersonate-User"] = "fuzz-nobody"   # never widen what the fuzzer may do
            headers.pop("Impersonate-Group", None)
    if verb == "deletecollection" and (not namespaced or ns != a.namespace):
        query["labelSelector"] = "fuzz=yes"   # outside the fuzz namespace, only what the fuzzer made
    if query:
        path += "?" + urllib.parse.urlencode(query)
    return method, path, body, headers, verb, what


# --- the run ---------------------------------------------------------------------------------
stats = {"sent": 0, "by_status": {}, "by_verb": {}, "by_what": {}, "fail": 0, "fail_5xx": 0, "hang": 0, "dropped": 0, "closed": 0}
lock = threading.Lock()
deadline = time.time() + a.max_seconds
counter = iter(range(a.requests))
failures = open(a.failures, "w")


def record_failure(kind, method, path, body, headers, detail):
    with lock:
        stats[kind] += 1
        stats["fail"] += 1
        failures.write(json.dumps({"failure": kind, "method": method, "path": path, "headers": headers, "detail": detail,
                                   "body_base64": base64.b64encode(body or b"").decode()}) + "\n")
        failures.flush()


def worker(tid):
    rng = random.Random(a.seed * 1000 + tid)
    conn = Conn()
    while time.time() < deadline:
        with lock:
            i = next(counter, None)
        if i is None:
            return
        method, path, body, headers, verb, what = one(rng)
        status = None
        for attempt in (1, 2):
            try:
                status, data = conn.request(method, path, body, headers)
                break
            except socket.timeout:
                record_failure("hang", method, path, body, headers, f"no answer in {a.timeout} s")
                break
            except (ConnectionError, http.client.HTTPException, ssl.SSLError, OSError) as e:
                # A kept-alive connection the server had closed: once more on a new one. A
                # request that is refused an answer twice, while the server still answers
                # /livez, is counted; one after which the server answers nothing is a crash.
                if attempt == 1:
                    continue
                try:
                    Conn().request("GET", "/livez", None, {})
                    with lock:
                        stats["closed"] += 1
                        failures.write(json.dumps({"note": "closed without an answer (not a failure)", "method": method, "path": path,
                                                   "headers": headers, "detail": repr(e), "body_base64": base64.b64encode(body or b"").decode()}) + "\n")
                except Exception as e2:
                    record_failure("dropped", method, path, body, headers, f"{e!r}; then /livez: {e2!r}")
        if status is None:
            continue
        with lock:
            stats["sent"] += 1
            stats["by_status"][status] = stats["by_status"].get(status, 0) + 1
            stats["by_verb"][verb] = stats["by_verb"].get(verb, 0) + 1
            stats["by_what"][what] = stats["by_what"].get(what, 0) + 1
        if status >= 500:
            record_failure("fail_5xx", method, path, body, headers, f"{status}: {data[:300]!r}")


start = time.time()
threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(a.threads)]
for t in threads:
    t.start()
for t in threads:
    t.join(a.max_seconds + a.timeout + 5)
took = time.time() - start
failures.close()

# Afterwards the server answers, and every served list still reads.
alive = True
try:
    s, _ = Conn().request("GET", "/livez", None, {})
    alive = s == 200
except Exception:
    alive = False
unreadable = []
if alive:
    c = Conn()
    for r in tops:
        if "list" in r[6]:
            path = f"{r[0]}/{r[3]}"
            try:
                s, _ = c.request("GET", path, None, {"Accept": "application/json"})
                if s != 200:
                    unreadable.append(f"{path}: {s}")
            except Exception as e:
                unreadable.append(f"{path}: {e!r}")

print(f"fuzz: {stats['sent']} answered requests in {took:.1f} s ({stats['sent'] / max(took, 0.001):.0f}/s), {len(tops)} resources and {len(subs)} subresources, seed {a.seed}")
print("  by status: " + ", ".join(f"{k}: {v}" for k, v in sorted(stats["by_status"].items(), key=lambda kv: str(kv[0]))))
print("  by verb:   " + ", ".join(f"{k}: {v}" for k, v in sorted(stats["by_verb"].items())))
print("  by body:   " + ", ".join(f"{k}: {v}" for k, v in sorted(stats["by_what"].items())))
print(f"  5xx: {stats['fail_5xx']}, hangs: {stats['hang']}, dropped connections: {stats['dropped']} (closed without an answer, server still up: {stats['closed']}), server alive afterwards: {'yes' if alive else 'NO'}, lists unreadable afterwards: {len(unreadable)}")
for u in unreadable[:10]:
    print(f"    {u}")
if stats["fail"]:
    print(f"  failures written to {a.failures}")
sys.exit(0 if stats["fail"] == 0 and alive and not unreadable else 1)
