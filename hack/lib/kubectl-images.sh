# Sourced by hack/test-kubectl --cluster (in the kubectl-streams namespace): an image named on
# Docker Hub runs offline, through the docker.io mirror of the cluster's registries file.
check "run --image=busybox (offline)" 'pod/hub created'  "${K[@]}" run hub --image=busybox --restart=Never -- sh -c 'echo from-a-docker-hub-name'
wait_for 60 bash -c "[ \"\$(${K[*]} get pod hub -o jsonpath='{.status.phase}')\" = Succeeded ]" || true
check "busybox ran"             'from-a-docker-hub-name' "${K[@]}" logs hub
check "its image"               '^busybox$'              "${K[@]}" get pod hub -o jsonpath='{.spec.containers[0].image}'
