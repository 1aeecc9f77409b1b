#!/usr/bin/env python3
# The official Python client's streaming helpers against a running cluster: stream() over
# pods/exec (output, stdin, stderr, exit code) and portforward() over pods/portforward (an HTTP
# request through the forwarded socket, and the error text of a port nobody listens on).
# Usage: KUBECONFIG=... python python-streams-test.py POD PORT
import sys
import time
from kubernetes import client, config
from kubernetes.stream import stream, portforward

pod, port = sys.argv[1], int(sys.argv[2])
config.load_kube_config()
api = client.CoreV1Api()
fails = 0


def check(name, cond, detail=""):
    global fails
    print(("ok   " if cond else "FAIL ") + name + ("" if cond else ": " + repr(detail)))
    if not cond:
        fails += 1


out = stream(api.connect_get_namespaced_pod_exec, pod, "default",
             command=["sh", "-c", "echo py-exec-ok"], stderr=True, stdin=False, stdout=True, tty=False)
check("stream(exec) returns the command's output", out.strip() == "py-exec-ok", out)

resp = stream(api.connect_get_namespaced_pod_exec, pod, "default",
              command=["sh", "-c", "head -n 1; echo to-err >&2; exit 4"], stderr=True, stdin=True, stdout=True,
              tty=False, _preload_content=False)
resp.write_stdin("from-python\n")
stdout, stderr = "", ""
deadline = time.time() + 20
while resp.is_open() and time.time() < deadline:
    resp.update(timeout=1)
    stdout += resp.read_stdout() if resp.peek_stdout() else ""
    stderr += resp.read_stderr() if resp.peek_stderr() else ""
resp.close()
check("stream(exec) with stdin echoes it back", stdout.strip() == "from-python", stdout)
check("stream(exec) delivers stderr", stderr.strip() == "to-err", stderr)
check("stream(exec) reports the exit code (4)", resp.returncode == 4, resp.returncode)

pf = portforward(api.connect_get_namespaced_pod_portforward, pod, "default", ports=str(port))
s = pf.socket(port)
s.setblocking(True)
s.sendall(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
data = b""
deadline = time.time() + 20
s.settimeout(5)
while time.time() < deadline:
    try:
        chunk = s.recv(65536)
    except Exception:
        break
    if not chunk:
        break
    data += chunk
s.close()
pf.close()
check("portforward() carries an HTTP request to the pod", b"200" in data.split(b"\r\n")[0] and b"hello from" in data, data[:200])

pf = portforward(api.connect_get_namespaced_pod_portforward, pod, "default", ports="9")
s = pf.socket(9)
s.settimeout(10)
try:
    got = s.recv(10)
except Exception:
    got = b"?"
deadline = time.time() + 10
while pf.error(9) is None and time.time() < deadline:
    time.sleep(0.1)
check("portforward() to a closed port reports the error", "refused" in (pf.error(9) or ""), pf.error(9))
pf.close()

print("python streams: %d failed" % fails)
sys.exit(1 if fails else 0)
