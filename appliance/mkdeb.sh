#!/bin/sh
# mkdeb.sh OUT.deb — packages pv for Debian 12 (`make deb`): stages `make
# install PREFIX=/usr` with the appliance's units and config, declares the
# shared libraries the binaries link (dpkg-shlibdeps) as Depends, and
# builds with dpkg-deb. No debhelper: the tree is small and this is all of
# it. Installable on any Debian 12 machine: pvd then runs under systemd as
# the user pv, on the config in /etc/pv/pvd.conf.
set -eu
cd "$(dirname "$0")/.."
out=${1:?usage: mkdeb.sh OUT.deb}
version=$(sed -n 's/^#define PV_VERSION "\(.*\)"/\1/p' src/base/pv.h)
arch=$(dpkg --print-architecture)
work=build/deb
root=$work/pv
rm -rf "$work"
mkdir -p "$root/DEBIAN"
make -s install DESTDIR="$PWD/$root" PREFIX=/usr >/dev/null
# the release build keeps -g for debugging here; the package does not need it
strip --strip-unneeded "$root"/usr/bin/*
install -D -m 644 appliance/pvd.conf "$root/etc/pv/pvd.conf"
for u in pv.service pv-firstboot.service pv-setup.service pv-admin-account.service; do
    install -D -m 644 "appliance/$u" "$root/lib/systemd/system/$u"
done
install -D -m 755 appliance/firstboot "$root/usr/lib/pv/firstboot"
install -D -m 644 README.md "$root/usr/share/doc/pv/README.md"

# Depends from the ELF files themselves; dpkg-shlibdeps wants a
# debian/control beside it, so it gets a minimal one.
mkdir -p "$work/debian"
printf 'Source: pv\n\nPackage: pv\nArchitecture: any\n' > "$work/debian/control"
shlibs=$(cd "$work" && dpkg-shlibdeps -O pv/usr/bin/pvd pv/usr/bin/pvctl pv/usr/bin/pvrender \
    2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || { echo "mkdeb.sh: dpkg-shlibdeps found no libraries" >&2; exit 1; }
size=$(du -sk "$root" | cut -f1)

cat > "$root/DEBIAN/control" <<CONTROL
Package: pv
Version: $version
Architecture: $arch
Maintainer: pv developers <pv@example.com>
Installed-Size: $size
Depends: $shlibs, adduser, init-system-helpers
Suggests: curl, cloud-guest-utils, openssh-server
Section: web
Priority: optional
Homepage: https://github.com/pv/pv
Description: photos in, videos out, from one box
 pvd serves the pv web app and API over HTTPS, stores photos and the
 videos it renders from them (LMDB and content-addressed files, optionally
 replicated to S3) and runs as the systemd service pv.service; pvctl
 administers it over a Unix socket (root and the pv-admin group);
 pvrender renders a video from the command line.
CONTROL
echo /etc/pv/pvd.conf > "$root/DEBIAN/conffiles"
install -m 755 appliance/deb-postinst "$root/DEBIAN/postinst"
install -m 755 appliance/deb-prerm "$root/DEBIAN/prerm"
install -m 755 appliance/deb-postrm "$root/DEBIAN/postrm"
dpkg-deb --root-owner-group -Zxz --build "$root" "$out" >/dev/null
echo "mkdeb.sh: $out ($(du -k "$out" | cut -f1) KiB)"
