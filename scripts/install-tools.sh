#!/usr/bin/env bash
# Installs the tools coffer's tests and code generation need, at pinned
# versions: the MinIO server (tests run a real one), nats-server (the fleet
# test runs a three-node cluster), FreeTDS's tsql (an independent TDS client
# for the SQL Server simulator's tests), protoc and protoc-gen-go, kubeconform
# and kustomize (scripts/check-k8s.sh validates deploy/k8s with them,
# offline), and Chromium (the dashboard's browser test drives it headless;
# Debian's package, unless a chromium is already on PATH). Safe to run
# again: whatever is already installed at the right version is skipped.
# Go binaries land in $(go env GOPATH)/bin.
set -euo pipefail

MINIO_MODULE=github.com/minio/minio
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
# the version pkg/bus embeds (go.mod), so the cluster tests run the same server
NATS_SERVER_MODULE=github.com/nats-io/nats-server/v2
NATS_SERVER_VERSION=v2.15.2
PROTOC_GEN_GO_MODULE=google.golang.org/protobuf
PROTOC_GEN_GO_VERSION=v1.36.12
KUBECONFORM_MODULE=github.com/yannh/kubeconform
KUBECONFORM_VERSION=v0.8.0
KUSTOMIZE_MODULE=sigs.k8s.io/kustomize/kustomize/v5
KUSTOMIZE_VERSION=v5.8.1
APT_PACKAGES=(freetds-bin protobuf-compiler)

log() { printf 'install-tools: %s\n' "$*"; }

gobin="$(go env GOPATH | cut -d: -f1)/bin"

# go_install NAME MODULE VERSION PACKAGE installs PACKAGE@VERSION unless
# $gobin/NAME was already built from MODULE at VERSION.
go_install() {
	local name=$1 module=$2 version=$3 pkg=$4
	local bin="$gobin/$name" have=""
	if [[ -x $bin ]]; then
		have=$(go version -m "$bin" 2>/dev/null |
			awk -v m="$module" '$1 == "mod" && $2 == m { print $3 }')
	fi
	if [[ $have == "$version" ]]; then
		log "$name $version already installed at $bin"
		return
	fi
	log "installing $name: go install $pkg@$version (found: ${have:-none})"
	local start=$SECONDS
	GOBIN="$gobin" go install "$pkg@$version"
	log "installed $name $version in $((SECONDS - start))s"
}

install_apt_packages() {
	local missing=() pkg
	for pkg in "${APT_PACKAGES[@]}"; do
		if [[ $(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null) == "install ok installed" ]]; then
			log "$pkg already installed"
		else
			missing+=("$pkg")
		fi
	done
	# make runs the tests; the image has it, but a bare machine might not.
	if ! command -v make >/dev/null; then
		missing+=(make)
	fi
	# the dashboard's browser test (services/coffer TestDashboard) fails in
	# CI without a Chromium
	if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
		missing+=(chromium)
	fi
	if ((${#missing[@]} == 0)); then
		return
	fi

	local sudo=()
	if [[ $(id -u) -ne 0 ]]; then
		sudo=(sudo)
	fi
	log "installing Debian packages: ${missing[*]}"
	"${sudo[@]}" apt-get update -qq
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq "${missing[@]}"
}

install_apt_packages
go_install minio "$MINIO_MODULE" "$MINIO_VERSION" "$MINIO_MODULE"
go_install nats-server "$NATS_SERVER_MODULE" "$NATS_SERVER_VERSION" "$NATS_SERVER_MODULE"
go_install protoc-gen-go "$PROTOC_GEN_GO_MODULE" "$PROTOC_GEN_GO_VERSION" "$PROTOC_GEN_GO_MODULE/cmd/protoc-gen-go"
go_install kubeconform "$KUBECONFORM_MODULE" "$KUBECONFORM_VERSION" "$KUBECONFORM_MODULE/cmd/kubeconform"
go_install kustomize "$KUSTOMIZE_MODULE" "$KUSTOMIZE_VERSION" "$KUSTOMIZE_MODULE"
log "done"
