#!/usr/bin/env bash
# Make a small busybox base image from Debian's busybox-static, as an OCI layout tar, with umoci:
# every applet linked in /bin, root and nobody in /etc/passwd, PATH set, Cmd /bin/sh.
# Usage: examples/busybox-base.sh OUT.tar    then: wbuild import OUT.tar -t busybox
set -euo pipefail
out=$(realpath -m "${1:?usage: $0 OUT.tar}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
umoci init --layout L
umoci new --image L:busybox
umoci unpack --image L:busybox B
mkdir -p B/rootfs/bin B/rootfs/etc B/rootfs/tmp B/rootfs/root
cp "$(command -v busybox)" B/rootfs/bin/busybox
for a in $(B/rootfs/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "B/rootfs/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >B/rootfs/etc/passwd
printf 'root:x:0:\nnogroup:x:65534:\n' >B/rootfs/etc/group
chmod 1777 B/rootfs/tmp
umoci repack --image L:busybox B
umoci config --image L:busybox \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.cmd /bin/sh
tar -C L -cf "$out" .
