#!/bin/bash
# Install every Debian 12 package Ferry needs to build, test and fuzz.
set -euo pipefail
PKGS=(
	build-essential cmake pkg-config python3
	libprotobuf-c-dev protobuf-c-compiler
	libcmocka-dev
	libnl-3-dev libnl-route-3-dev
	libibverbs-dev librdmacm-dev
	libssl-dev openssl
	libxxhash-dev
	libnbd-dev liburing-dev nbdkit
	corosync libcpg-dev libquorum-dev libvotequorum-dev libcmap-dev
	libcorosync-common-dev libqb-dev iproute2 procps iputils-ping
	clang llvm
)
missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
		|| missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	echo "install-deps: all ${#PKGS[@]} packages present"
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing ${missing[*]}; run as root to install them" >&2
	exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
