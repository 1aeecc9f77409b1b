"""Drives the apiserver with the official Kubernetes Python client, as a client-library user would:
for every served kind, create, read, list, patch, watch (ADDED, MODIFIED, DELETED from the list's
resourceVersion) and delete; then create_from_yaml and its conflict error. Run by
hack/test-python-client with KUBECONFIG set. Prints "N passed, M failed"; exits 1 on a failure."""
import base64
import os
import subprocess
import sys
import tempfile
import traceback

from kubernetes import client, config, utils, watch
from kubernetes.client.rest import ApiException

config.load_kube_config(os.environ["KUBECONFIG"])
api = client.ApiClient()
NS = "pyclient"
passed = failed = 0


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok   %s" % name)
    else:
        failed += 1
        print("FAIL %s %s" % (name, detail))


def csr_request():
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                        "-keyout", d + "/k", "-out", d + "/r", "-subj", "/CN=pyclient"], check=True, capture_output=True)
        return base64.b64encode(open(d + "/r", "rb").read()).decode()


IMAGE = "127.0.0.1:5000/demo/busybox:1.0"
TEMPLATE = {"metadata": {"labels": {"app": "py"}}, "spec": {"containers": [{"name": "c", "image": IMAGE}]}}
# (api class, snake name, namespaced, body)
KINDS = [
    (client.CoreV1Api, "namespace", False, {"metadata": {"name": "pyns"}}),
    (client.CoreV1Api, "pod", True, {"metadata": {"name": "py"}, "spec": {"containers": [{"name": "c", "image": IMAGE}]}}),
    (client.CoreV1Api, "node", False, {"metadata": {"name": "pynode"}}),
    (client.CoreV1Api, "service", True, {"metadata": {"name": "py"}, "spec": {"selector": {"app": "py"}, "ports": [{"port": 80}]}}),
    (client.CoreV1Api, "endpoints", True, {"metadata": {"name": "py"}, "subsets": [{"addresses": [{"ip": "198.18.7.7"}], "ports": [{"port": 80}]}]}),
    (client.CoreV1Api, "event", True, {"metadata": {"name": "py"}, "involvedObject": {"kind": "Pod", "name": "py", "namespace": NS},
                                       "reason": "Test", "message": "from python", "type": "Normal"}),
    (client.CoreV1Api, "config_map", True, {"metadata": {"name": "py"}, "data": {"a": "1"}}),
    (client.CoreV1Api, "secret", True, {"metadata": {"name": "py"}, "data": {"a": base64.b64encode(b"s3cret").decode()}}),
    (client.AppsV1Api, "deployment", True, {"metadata": {"name": "py"}, "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "py"}}, "template": TEMPLATE}}),
    (client.AppsV1Api, "replica_set", True, {"metadata": {"name": "py"}, "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "py"}}, "template": TEMPLATE}}),
    (client.AutoscalingV2Api, "horizontal_pod_autoscaler", True, {"metadata": {"name": "py"}, "spec": {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "py"}, "minReplicas": 1, "maxReplicas": 3,
        "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}]}}),
    (client.AutoscalingV1Api, "horizontal_pod_autoscaler", True, {"metadata": {"name": "pyv1"}, "spec": {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "py"}, "minReplicas": 1, "maxReplicas": 3,
        "targetCPUUtilizationPercentage": 70}}),
    (client.CoordinationV1Api, "lease", True, {"metadata": {"name": "py"}, "spec": {"holderIdentity": "me", "leaseDurationSeconds": 10}}),
    (client.CertificatesV1Api, "certificate_signing_request", False, {"metadata": {"name": "pycsr"}, "spec": {
        "request": None, "signerName": "kubernetes.io/kube-apiserver-client", "usages": ["client auth"]}}),
    (client.DiscoveryV1Api, "endpoint_slice", True, {"metadata": {"name": "py"}, "addressType": "IPv4",
                                                     "endpoints": [{"addresses": ["198.18.7.7"]}], "ports": [{"port": 80}]}),
    (client.PolicyV1Api, "pod_disruption_budget", True, {"metadata": {"name": "py"}, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "py"}}}}),
    (client.BatchV1Api, "job", True, {"metadata": {"name": "py"}, "spec": {"suspend": True, "template": {
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": IMAGE}]}}}}),
    (client.BatchV1Api, "cron_job", True, {"metadata": {"name": "py"}, "spec": {"schedule": "@daily", "suspend": True, "jobTemplate": {"spec": {
        "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": IMAGE}]}}}}}}),
    (client.AppsV1Api, "daemon_set", True, {"metadata": {"name": "py"}, "spec": {"selector": {"matchLabels": {"app": "py"}}, "template": TEMPLATE}}),
    (client.AppsV1Api, "stateful_set", True, {"metadata": {"name": "py"}, "spec": {"replicas": 0, "serviceName": "py", "selector": {"matchLabels": {"app": "py"}},
        "template": TEMPLATE, "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}}),
    (client.CoreV1Api, "service_account", True, {"metadata": {"name": "py"}, "automountServiceAccountToken": False}),
    (client.StorageV1Api, "storage_class", False, {"metadata": {"name": "pysc"}, "provisioner": "example.com/py", "volumeBindingMode": "WaitForFirstConsumer"}),
    (client.CoreV1Api, "persistent_volume", False, {"metadata": {"name": "pypv"}, "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
        "hostPath": {"path": "/srv/pypv"}, "storageClassName": "pysc"}}),
    (client.CoreV1Api, "persistent_volume_claim", True, {"metadata": {"name": "py"}, "spec": {"accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "1Gi"}}}}),
    (client.RbacAuthorizationV1Api, "role", True, {"metadata": {"name": "py"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
    (client.RbacAuthorizationV1Api, "cluster_role", False, {"metadata": {"name": "py:reader"}, "rules": [{"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]}),
    (client.RbacAuthorizationV1Api, "role_binding", True, {"metadata": {"name": "py"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "py"},
        "subjects": [{"kind": "ServiceAccount", "name": "py", "namespace": NS}]}),
    (client.RbacAuthorizationV1Api, "cluster_role_binding", False, {"metadata": {"name": "py:reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "py:reader"},
        "subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "py-group"}]}),
]
# Kinds whose objects carry a protection finalizer that a controller-manager would lift.
PROTECTED = {"persistent_volume", "persistent_volume_claim"}


def call(api_obj, verb, snake, namespaced, **kw):
    fn = getattr(api_obj, "%s_%s%s" % (verb, "namespaced_" if namespaced else "", snake))
    return fn(namespace=NS, **kw) if namespaced else fn(**kw)


core = client.CoreV1Api()
try:
    core.create_namespace({"metadata": {"name": NS}})
except ApiException as e:
    if e.status != 409:
        raise

for cls, snake, namespaced, body in KINDS:
    a = cls()
    label = "%s %s" % (cls.__name__.replace("Api", ""), snake)
    name = body["metadata"]["name"]
    if snake == "certificate_signing_request":
        body["spec"]["request"] = csr_request()
    try:
        listed = call(a, "list", snake, namespaced)
        rv = listed.metadata.resource_version
        created = call(a, "create", snake, namespaced, body=body)
        check("%s: create" % label, created.metadata.name == name and created.metadata.uid)
        got = call(a, "read", snake, namespaced, name=name)
        check("%s: read" % label, got.metadata.uid == created.metadata.uid)
        if snake == "horizontal_pod_autoscaler" and cls is client.AutoscalingV1Api:
            check("%s: v1 fields" % label, got.spec.target_cpu_utilization_percentage == 70, str(got.spec))
        patched = call(a, "patch", snake, namespaced, name=name, body={"metadata": {"labels": {"patched": "yes"}}})
        check("%s: patch" % label, (patched.metadata.labels or {}).get("patched") == "yes")
        items = call(a, "list", snake, namespaced, label_selector="patched=yes").items
        check("%s: list with selector" % label, [i.metadata.name for i in items] == [name], str([i.metadata.name for i in items]))
        call(a, "delete", snake, namespaced, name=name, grace_period_seconds=0)
        if snake in PROTECTED:
            check("%s: delete waits for its finalizer" % label, call(a, "read", snake, namespaced, name=name).metadata.deletion_timestamp is not None)
            call(a, "patch", snake, namespaced, name=name, body={"metadata": {"finalizers": None}})
        if snake == "persistent_volume_claim":
            check("%s: the default class" % label, created.spec.storage_class_name == "local-path", str(created.spec.storage_class_name))
        seen = []
        w = watch.Watch()
        for ev in w.stream(getattr(a, "list_%s%s" % ("namespaced_" if namespaced else "", snake)),
                           **({"namespace": NS} if namespaced else {}), resource_version=rv, timeout_seconds=3):
            if ev["object"].metadata.name == name:
                seen.append(ev["type"])
            if ev["type"] == "DELETED" and ev["object"].metadata.name == name:
                w.stop()
        check("%s: watch" % label, seen[:1] == ["ADDED"] and "MODIFIED" in seen and seen[-1:] == ["DELETED"], str(seen))
    except Exception as e:  # noqa: BLE001 - every failure is reported, the run goes on
        check("%s" % label, False, "%s: %s" % (type(e).__name__, e))
        traceback.print_exc(limit=2)

# create_from_yaml, and the conflict text clients compare.
with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
    f.write("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fromyaml\n  namespace: %s\ndata:\n  k: v\n" % NS)
    path = f.name
objs = utils.create_from_yaml(api, path)
check("create_from_yaml", objs and objs[0][0].metadata.name == "fromyaml")
try:
    utils.create_from_yaml(api, path)
    check("create_from_yaml conflict", False, "no error")
except utils.FailToCreateError as e:
    body = e.api_exceptions[0].body
    want = ('{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"configmaps \\"fromyaml\\" already exists",'
            '"reason":"AlreadyExists","details":{"name":"fromyaml","kind":"configmaps"},"code":409}')
    check("create_from_yaml conflict", e.api_exceptions[0].status == 409 and body.strip() == want, body)
os.unlink(path)
core.delete_namespace(NS)
print("python client: %d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
