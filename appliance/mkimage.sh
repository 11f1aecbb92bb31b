#!/bin/sh
# mkimage.sh PV.deb OUT.raw — builds the appliance's disk (`make image`; as
# root on Debian 12, from Debian's packages only):
#
#   GPT: 1 BIOS boot (1 MiB, GRUB's core for BIOS), 2 EFI system (63 MiB,
#   GRUB as EFI/BOOT/BOOTX64.EFI, so no NVRAM entry is needed), 3 root
#   (ext4, last so that the first boot can grow it to the disk).
#
# debootstrap (minbase) writes Debian 12 straight onto the root partition,
# then appliance/provision.sh (the same script Packer runs on EC2) makes it
# the appliance in a chroot. GRUB comes from this machine's grub-pc-bin and
# grub-efi-amd64-bin, for both firmwares, with a fixed grub.cfg that boots
# /vmlinuz and /initrd.img (Debian keeps those links on the newest
# kernel), so the image carries no boot loader packages.
#
# It works where udev and partition scanning do not (containers, CI): each
# partition is a loop device of its own at its offset in the file, the ESP
# is written with mtools (no vfat mount), and the EFI loader is made with
# grub-mkimage around a two-line config that finds the root by UUID.
#
# PV_MIRROR (default: this machine's apt mirror), PV_IMAGE_SIZE (2G),
# PV_APT_CACHE (a directory to keep downloaded .debs in between builds).
set -eu
cd "$(dirname "$0")/.."
deb=${1:?usage: mkimage.sh PV.deb OUT.raw}
out=${2:?usage: mkimage.sh PV.deb OUT.raw}
[ "$(id -u)" = 0 ] || { echo "mkimage.sh: run as root (loop devices, mounts, chroot)" >&2; exit 1; }
for c in debootstrap sgdisk mkfs.vfat mkfs.ext4 grub-install grub-mkimage mcopy losetup; do
    command -v $c >/dev/null || { echo "mkimage.sh: no $c: sh tools/deps.sh image" >&2; exit 1; }
done
mirror=${PV_MIRROR:-$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p;s/^deb \(http[^ ]*debian\) .*/\1/p' \
    /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null | head -n 1)}
mirror=${mirror:-http://deb.debian.org/debian}
size=${PV_IMAGE_SIZE:-2G}
start=$(date +%s)

work=$(dirname "$out")
mnt=$work/mnt
tmp=$out.tmp
mkdir -p "$work" "$mnt"
disk="" root="" esp=""
cleanup() {
    set +e
    for m in run dev/pts dev sys proc var/cache/apt/archives ""; do
        mountpoint -q "$mnt/$m" 2>/dev/null && umount -l "$mnt/$m"
    done
    for l in $esp $root $disk; do losetup -d "$l"; done
    rm -f "$tmp"
}
trap cleanup EXIT INT TERM

rm -f "$tmp"
truncate -s "$size" "$tmp"
sgdisk -a 2048 -n 1:0:+1M -t 1:EF02 -c 1:bios -n 2:0:+63M -t 2:EF00 -c 2:esp \
       -n 3:0:0 -t 3:8304 -c 3:root "$tmp" >/dev/null
# "first last" sector of partition $1
part_range() { sgdisk -i "$1" "$tmp" | sed -n 's/^First sector: \([0-9]*\).*/\1/p;s/^Last sector: \([0-9]*\).*/\1/p' | tr '\n' ' '; }
part_loop() {
    set -- $(part_range "$1")
    losetup -f --show -o $(($1 * 512)) --sizelimit $((($2 - $1 + 1) * 512)) "$tmp"
}
disk=$(losetup -f --show "$tmp")
esp=$(part_loop 2)
root=$(part_loop 3)
mkfs.vfat -F 32 -n ESP "$esp" >/dev/null
mkfs.ext4 -q -L root -m 1 "$root"
root_uuid=$(blkid -s UUID -o value "$root")
mount "$root" "$mnt"

echo "mkimage.sh: debootstrap bookworm from $mirror" >&2
cache_opt=""
if [ -n "${PV_APT_CACHE:-}" ]; then
    mkdir -p "$PV_APT_CACHE"
    cache_opt="--cache-dir=$(cd "$PV_APT_CACHE" && pwd)"
fi
# shellcheck disable=SC2086
debootstrap --variant=minbase --include=systemd,systemd-sysv,udev,kmod $cache_opt \
    bookworm "$mnt" "$mirror" > "$work/debootstrap.log" 2>&1 ||
    { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }

cat > "$mnt/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SOURCES
cat > "$mnt/etc/fstab" <<FSTAB
UUID=$root_uuid / ext4 defaults,noatime,errors=remount-ro 0 1
FSTAB
for m in proc sys dev dev/pts run; do
    case $m in
    proc) mount -t proc proc "$mnt/proc" ;;
    sys) mount -t sysfs sys "$mnt/sys" ;;
    run) mount -t tmpfs tmpfs "$mnt/run" ;;
    *) mount --bind "/$m" "$mnt/$m" ;;
    esac
done
if [ -n "${PV_APT_CACHE:-}" ]; then
    mount --bind "$PV_APT_CACHE" "$mnt/var/cache/apt/archives"
fi
# no daemon starts in the chroot
printf '#!/bin/sh\nexit 101\n' > "$mnt/usr/sbin/policy-rc.d"
chmod 755 "$mnt/usr/sbin/policy-rc.d"
cp "$deb" "$mnt/tmp/pv.deb"
cp appliance/provision.sh "$mnt/tmp/provision.sh"
echo "mkimage.sh: provisioning" >&2
chroot "$mnt" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    sh /tmp/provision.sh /tmp/pv.deb > "$work/provision.log" 2>&1 ||
    { tail -n 30 "$work/provision.log" >&2; exit 1; }
if [ -n "${PV_APT_CACHE:-}" ]; then
    umount "$mnt/var/cache/apt/archives"
fi
rm -f "$mnt/usr/sbin/policy-rc.d" "$mnt/tmp/pv.deb" "$mnt/tmp/provision.sh"

echo "mkimage.sh: boot loaders (BIOS and UEFI)" >&2
# BIOS: boot.img in the MBR, core.img in the BIOS boot partition (GRUB
# reads the GPT of the whole-disk device itself).
grub-install --target=i386-pc --boot-directory="$mnt/boot" --modules="part_gpt ext2" \
    "$disk" > "$work/grub.log" 2>&1 || { cat "$work/grub.log" >&2; exit 1; }
# UEFI: the removable-media path EFI/BOOT/BOOTX64.EFI (no NVRAM entry),
# which finds the root filesystem by UUID and reads the same grub.cfg.
cp -R /usr/lib/grub/x86_64-efi "$mnt/boot/grub/"
printf 'search.fs_uuid %s root\nset prefix=($root)/boot/grub\n' "$root_uuid" > "$work/early.cfg"
grub-mkimage -O x86_64-efi -o "$work/BOOTX64.EFI" -c "$work/early.cfg" -p /boot/grub \
    part_gpt ext2 search_fs_uuid normal configfile linux gzio all_video efi_gop serial terminal echo
mmd -i "$esp" ::/EFI ::/EFI/BOOT 2>> "$work/grub.log"
mcopy -i "$esp" "$work/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI 2>> "$work/grub.log"
# Serial console first (EC2's "get system log", qemu -nographic), the
# screen too; quiet, so that a slow serial line does not slow the boot.
cat > "$mnt/boot/grub/grub.cfg" <<GRUB
set timeout=0
set default=0
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
search --no-floppy --fs-uuid --set=root $root_uuid
menuentry "pv appliance" {
    linux /vmlinuz root=UUID=$root_uuid ro console=tty0 console=ttyS0,115200 quiet
    initrd /initrd.img
}
GRUB
[ -e "$mnt/vmlinuz" ] && [ -e "$mnt/initrd.img" ] ||
    { echo "mkimage.sh: no /vmlinuz or /initrd.img in the image" >&2; exit 1; }
# What the image must not carry, checked on the image itself: each box
# makes its own keys and identity at its first boot.
leaks=""
ls "$mnt"/etc/ssh/ssh_host_* >/dev/null 2>&1 && leaks="$leaks SSH-host-keys"
[ -s "$mnt/etc/machine-id" ] && leaks="$leaks machine-id"
[ -n "$(ls -A "$mnt/var/lib/pv")" ] && leaks="$leaks pv-keys-or-data"
[ -e "$mnt/home/admin/.ssh" ] || [ -e "$mnt/root/.ssh" ] && leaks="$leaks authorized-keys"
awk -F: '$2 !~ /^[!*]/ { bad = bad " " $1 } END { if (bad) { print bad; exit 1 } }' \
    "$mnt/etc/shadow" >/dev/null || leaks="$leaks passwords"
[ -z "$leaks" ] || { echo "mkimage.sh: the image would carry:$leaks" >&2; exit 1; }
used=$(df -B1M --output=used "$mnt" | tail -n 1 | tr -d ' ')
for m in run dev/pts dev sys proc; do umount "$mnt/$m"; done
# zeroes in free space keep the raw file sparse and compressible
fstrim "$mnt" 2>/dev/null || true
umount "$mnt"
e2fsck -fy "$root" >/dev/null 2>&1 || true
for l in $esp $root $disk; do losetup -d "$l"; done
disk="" root="" esp=""
mv "$tmp" "$out"
trap - EXIT INT TERM
echo "mkimage.sh: $out: ${used} MiB used on the root filesystem, $(du -BM "$out" | cut -f1) on disk" \
     "($size raw), built in $(( $(date +%s) - start )) s" >&2
