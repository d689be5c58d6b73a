#!/bin/bash
# Builds $FERRY_NKVM_DIR/initramfs.cpio.gz: static busybox, this folder's
# init, and the modules for virtio-9p and kvm_amd from Debian's
# linux-image-amd64 (tools/nested-kvm/README.md).
set -euo pipefail
K=${K:-$(ls /lib/modules | sort -V | tail -1)}
D=${FERRY_NKVM_DIR:-/var/tmp/ferry-nested-kvm}
SRC=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$D"
R=$(mktemp -d)
trap 'rm -rf "$R"' EXIT
mkdir -p "$R"/{bin,sbin,proc,sys,dev,newroot,lib/modules/$K,tmp}
cp /bin/busybox "$R/bin/busybox"
for a in $(/bin/busybox --list); do
  [ "$a" = busybox ] || ln -sf busybox "$R/bin/$a"
done
: > "$R/modlist"
for m in virtio_pci virtio_console 9pnet_virtio 9p kvm_amd; do
  modprobe -S "$K" --show-depends "$m" | awk '$1=="insmod"{print $2}'
done | awk '!seen[$0]++' | while read -r f; do
  mkdir -p "$R$(dirname "$f")"
  cp "$f" "$R$f"
  echo "$f" >> "$R/modlist"
done
cp "$SRC/init" "$R/init"
chmod +x "$R/init"
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -1) > "$D/initramfs.cpio.gz.new"
mv -f "$D/initramfs.cpio.gz.new" "$D/initramfs.cpio.gz"
echo "built $D/initramfs.cpio.gz for $K"; cat "$R/modlist"
