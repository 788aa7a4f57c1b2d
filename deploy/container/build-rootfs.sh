#!/bin/sh
# Assembles the container's root filesystem from the compiled binary and the shared libraries
# it loads (ldd), so the image needs no base (FROM scratch):
#
#   deploy/container/build-rootfs.sh dist/tcprouter build/rootfs
#
# Layout: /tcprouter, the glibc files ldd lists (at their own paths), /etc/passwd and
# /etc/group with the tcprouter user (uid/gid 65532), /etc/nsswitch.conf (glibc ≥ 2.34 has the
# files and dns lookups built in: /etc/hosts and /etc/resolv.conf come from the runtime),
# /etc/tcprouter (the config is mounted there) and an empty /tmp and /proc.
set -eu

if [ $# -ne 2 ]; then
  echo "usage: $0 BINARY ROOTFS" >&2
  exit 2
fi
binary=$1
rootfs=$2
[ -x "$binary" ] || { echo "$0: $binary: not an executable file (run npm run build)" >&2; exit 1; }
command -v ldd >/dev/null || { echo "$0: ldd not found" >&2; exit 1; }

mkdir -p "$rootfs/etc/tcprouter" "$rootfs/tmp" "$rootfs/proc"
chmod 1777 "$rootfs/tmp"
cp "$binary" "$rootfs/tcprouter"
chmod 0755 "$rootfs/tcprouter"

# Every absolute path in ldd's output: "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)"
# and the loader "/lib64/ld-linux-x86-64.so.2 (0x…)". Copied with the files they point to
# (cp -L), at the same path, so the binary's interpreter and search path find them.
libraries=$(ldd "$binary" | awk '{ for (i = 1; i <= NF; i++) if (substr($i, 1, 1) == "/") print $i }' | sort -u)
[ -n "$libraries" ] || { echo "$0: ldd listed no libraries for $binary" >&2; exit 1; }
for library in $libraries; do
  mkdir -p "$rootfs$(dirname "$library")"
  cp -L "$library" "$rootfs$library"
done

cat > "$rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/:/sbin/nologin
tcprouter:x:65532:65532:tcprouter:/:/sbin/nologin
PASSWD
cat > "$rootfs/etc/group" <<'GROUP'
root:x:0:
tcprouter:x:65532:
GROUP
echo "hosts: files dns" > "$rootfs/etc/nsswitch.conf"

echo "$rootfs: /tcprouter and $(echo "$libraries" | wc -l) libraries: $(echo $libraries)"
