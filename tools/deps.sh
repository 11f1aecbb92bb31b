#!/bin/sh
# Installs the Debian packages pv needs (as root), quickly when they are
# already there: `sh tools/deps.sh` for building and running, `sh
# tools/deps.sh test` for the tests too, `sh tools/deps.sh image` for the
# appliance image (`make deb`, `make image`, `make image-test`; see
# appliance/README.md). Idempotent.
set -eu

BUILD="make gcc libc6-dev pkg-config liblmdb-dev lmdb-utils libevent-dev libssl-dev libjwt-dev
libmsgpack-dev libavcodec-dev libavformat-dev libavfilter-dev libswscale-dev libswresample-dev
libavutil-dev libcurl4-openssl-dev libsodium-dev libpq-dev libheif-dev libexif-dev libjansson-dev
libjpeg62-turbo-dev
openssl ca-certificates curl jq"
TEST="clang-14 libclang-rt-14-dev ffmpeg python3 curl procps util-linux chromium fonts-dejavu-core
libimage-exiftool-perl libheif-examples python3-botocore sslscan postgresql-15 postgresql-client-15"
IMAGE="dpkg-dev debootstrap gdisk dosfstools mtools e2fsprogs grub-pc-bin grub-efi-amd64-bin
grub2-common qemu-system-x86 qemu-utils ovmf openssh-client python3"

want="$BUILD"
[ "${1:-}" = test ] && want="$want $TEST"
[ "${1:-}" = image ] && want="$want $IMAGE"
# The browser tests drive chromium from Node.js (playwright-core) and the S3
# tests run s3rver on it (tests/peers/); use the machine's Node when there
# is one (Debian's npm would replace it).
[ "${1:-}" = test ] && ! command -v node >/dev/null 2>&1 && want="$want nodejs npm"

missing=""
for p in $want; do
    s=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$s" in *"install ok installed"*) ;; *) missing="$missing $p" ;; esac
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "deps: missing packages:$missing — run as root, or: sudo apt-get install$missing" >&2
    exit 1
fi
echo "deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
