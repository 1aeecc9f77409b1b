# Sourced by hack/test-kubectl --cluster (after kubectl-streams.sh, in its namespace): kubectl
# drain keeps a PodDisruptionBudget. Two pods on one node (by a node label) with a budget of
# minAvailable 2: the drain times out naming the budget and the pods stay. A second node gets the
# label and the budget allows one disruption: the pods leave one at a time, each replacement
# Ready on the other node before the next goes, and the drain finishes.
DRAINED=
drain_cleanup() {
  [ -n "$DRAINED" ] && kubectl uncordon "$DRAINED" >/dev/null 2>&1 || true
  kubectl label nodes --all kdrain- >/dev/null 2>&1 || true
  streams_cleanup
}
trap drain_cleanup EXIT
read -r DRAINED OTHER _ <<<"$(kubectl get nodes -o jsonpath='{.items[*].metadata.name}')"
kubectl label node "$DRAINED" kdrain=yes >/dev/null
"${K[@]}" apply -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: kdrain}
spec:
  replicas: 2
  selector: {matchLabels: {app: kdrain}}
  template:
    metadata: {labels: {app: kdrain}}
    spec:
      terminationGracePeriodSeconds: 1
      nodeSelector: {kdrain: "yes"}
      containers: [{name: main, image: $IMAGE, command: ["/bin/sleep", "3600"]}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: kdrain}
spec:
  minAvailable: 2
  selector: {matchLabels: {app: kdrain}}
YAML
wait_for 90 bash -c "[ \"\$(${K[*]} get pdb kdrain -o jsonpath='{.status.currentHealthy}')\" = 2 ]" || true
on_node() { "${K[@]}" get pods -l app=kdrain --field-selector "spec.nodeName=$1" -o name | wc -l; }
check "drain held by a budget"  "violate the pod's disruption budget" \
  bash -c "! timeout 60 kubectl drain '$DRAINED' --ignore-daemonsets --delete-emptydir-data --pod-selector=app=kdrain --timeout=8s 2>&1"
check "pods stay while held"    '^2$'                    on_node "$DRAINED"
kubectl label node "$OTHER" kdrain=yes >/dev/null
"${K[@]}" patch pdb kdrain --type=merge -p '{"spec":{"minAvailable":1}}' >/dev/null
check "drain with a budget"     'drained'                timeout 120 kubectl drain "$DRAINED" --ignore-daemonsets --delete-emptydir-data --pod-selector=app=kdrain --timeout=90s
check "pods moved to the other node" '^2$'               on_node "$OTHER"
check "uncordon"                'uncordoned'             kubectl uncordon "$DRAINED"
DRAINED=
