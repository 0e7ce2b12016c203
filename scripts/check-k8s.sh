#!/usr/bin/env bash
# Validates coffer's deployment files offline, as `make test` runs it:
#
#   - deploy/k8s renders with kustomize, and every object it renders, the
#     Secret templates and the examples are valid for Kubernetes 1.33 and
#     KEDA 2.21 under kubeconform -strict (unknown fields are errors), with
#     the schemas vendored in deploy/k8s/schemas: nothing is fetched;
#   - each manifest in deploy/k8s/testdata/invalid is rejected as invalid
#     (not merely unvalidated), so the check can fail;
#   - every manifest in deploy/k8s is listed in its kustomization.yaml,
#     apart from the templates and examples;
#   - docker-compose.yml and deploy/k8s pin every image: no `latest`, no
#     image without a tag.
#
# Needs kubeconform and kustomize (scripts/install-tools.sh puts them in
# Go's bin directory, which need not be on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
PATH="$PATH:$(go env GOPATH | cut -d: -f1)/bin"

k8s=deploy/k8s
kube_version=1.33.13 # the version deploy/k8s/schemas holds (its SOURCES)
schemas="$k8s/schemas/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json"
kubeconform=(kubeconform -strict -kubernetes-version "$kube_version" -schema-location "$schemas")

fail() { printf 'check-k8s: %s\n' "$*" >&2; exit 1; }

# kubeconform skips, silently, any file not named *.yaml, *.yml or *.json
rendered=$(mktemp --suffix=.yaml)
trap 'rm -f "$rendered"' EXIT
kustomize build "$k8s" >"$rendered" || fail "kustomize build $k8s failed"

# Missing schemas are errors, not skips: a kind without a vendored schema
# fails here until scripts/k8s-schemas generates it.
files=("$rendered" "$k8s/secrets.example.yaml" "$k8s"/examples/*.yaml)
out=$("${kubeconform[@]}" -summary "${files[@]}") || fail "deploy/k8s is not valid: $out"
[[ $out == *" found in ${#files[@]} files - "* ]] || fail "kubeconform did not read all of ${files[*]}: $out"
summary=${out##*Summary: }

for f in "$k8s"/testdata/invalid/*.yaml; do
	out=$("${kubeconform[@]}" -summary "$f" 2>&1) && fail "$f was accepted; it must be rejected"
	[[ $out == *"Invalid: 1, Errors: 0"* ]] ||
		fail "$f was not rejected as invalid, but: $out"
done

for f in "$k8s"/*.yaml; do
	name=${f##*/}
	case $name in
	kustomization.yaml | secrets.example.yaml | nats-values.yaml) continue ;;
	esac
	grep -qE "^  - $name\$" "$k8s/kustomization.yaml" || fail "$f is not listed in $k8s/kustomization.yaml"
done

# every image: line names a tag (or digest), and never latest
bad=$(grep -hE '^[[:space:]]*(-[[:space:]]*)?image:' docker-compose.yml "$rendered" "$k8s"/examples/*.yaml |
	grep -vE 'image:[[:space:]]*[^[:space:]]+(:[^[:space:]/]+|@sha256:[0-9a-f]+)[[:space:]]*$' || true)
bad+=$(grep -hE '^[[:space:]]*(-[[:space:]]*)?image:.*:latest' docker-compose.yml "$rendered" "$k8s"/examples/*.yaml || true)
[[ -z $bad ]] || fail "images without a pinned version: $bad"

echo "check-k8s: $summary"
echo "check-k8s: deploy/k8s valid for Kubernetes $kube_version; $(ls "$k8s"/testdata/invalid/*.yaml | wc -l) invalid manifests rejected"
