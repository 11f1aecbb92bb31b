#!/bin/sh
# provision.sh PV.deb — turns a Debian 12 system into the pv appliance.
# One script for both ways the appliance is made (appliance/README.md):
# `make image` runs it in a chroot on the disk it builds, Packer runs it on
# an EC2 instance started from Debian's AMI. As root; idempotent.
#
# It installs pv's package and what the appliance needs around it (Debian's
# cloud kernel with the ENA and NVMe drivers, systemd-networkd, sshd,
# growpart), enables the units, and then removes what an image must not
# carry or need not: SSH host keys, the machine id, passwords, apt's lists,
# documentation, locales. The first boot makes what was removed
# (appliance/firstboot).
set -eu
deb=${1:?usage: provision.sh PV.deb}
case $deb in /*) ;; *) deb=$PWD/$deb ;; esac
export DEBIAN_FRONTEND=noninteractive
ADMIN=admin

# Documentation, man pages and translations are never installed (the
# package's copyright files are kept).
cat > /etc/dpkg/dpkg.cfg.d/01-pv-appliance <<'DPKG'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-include=/usr/share/man/man8/pv*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
path-exclude=/usr/share/lintian/*
DPKG
cat > /etc/apt/apt.conf.d/01-pv-appliance <<'APT'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
APT
# The initramfs holds what finds the root disk on EC2 and in a VM (NVMe
# and ext4 are built into the cloud kernel), not every driver there is: a
# third of the size, and the boot reads and unpacks less.
mkdir -p /etc/initramfs-tools/conf.d
printf 'MODULES=list\nCOMPRESS=zstd\n' > /etc/initramfs-tools/conf.d/pv-appliance
printf '%s\n' virtio_pci virtio_blk virtio_scsi sd_mod ahci xen_blkfront > /etc/initramfs-tools/modules
had_kernel=$(dpkg-query -W -f='${Status}' linux-image-cloud-amd64 2>/dev/null || true)

apt-get update -qq
apt-get install -y -qq linux-image-cloud-amd64 systemd systemd-sysv systemd-resolved \
    udev openssh-server cloud-guest-utils fdisk e2fsprogs curl ca-certificates sudo \
    zstd "$deb" >/dev/null
case $had_kernel in *"install ok installed"*) update-initramfs -u -k all >/dev/null ;; esac
# Packer's source AMI comes with cloud-init: the first boot here reads the
# user data itself (pvd.conf keys), which cloud-init would only complain about.
# Its network configuration (ifupdown) would fight systemd-networkd's.
if dpkg-query -W cloud-init >/dev/null 2>&1; then
    apt-get purge -y -qq cloud-init >/dev/null
fi
if [ -e /lib/systemd/system/networking.service ]; then
    systemctl disable networking.service >/dev/null 2>&1 || true
    rm -f /etc/network/interfaces.d/*cloud-init*
fi

# Networking: DHCP on the first Ethernet interface, whatever its name
# (ens5 on EC2's Nitro, enp0s3 or eth0 elsewhere); resolved for DNS.
mkdir -p /etc/systemd/network
cat > /etc/systemd/network/80-pv-dhcp.network <<'NET'
[Match]
Name=en* eth*

[Network]
DHCP=yes

[DHCPv4]
UseDomains=yes
NET
ln -sf ../run/systemd/resolve/stub-resolv.conf /etc/resolv.conf
# resolved as Debian orders it holds up sysinit.target and network.target
# until it has started (seconds on a slow first boot); pvd needs DNS only
# for S3, later, so here it starts beside the rest.
sed 's/^Before=.*/Before=nss-lookup.target shutdown.target initrd-switch-root.target/' \
    /lib/systemd/system/systemd-resolved.service > /etc/systemd/system/systemd-resolved.service
# Under emulation (and on a small instance) the first boot is CPU-bound:
# what nothing before pvd needs starts after it, so that the way to a
# healthy HTTPS (networkd, the user data, pvd) has the CPUs to itself.
for u in systemd-resolved systemd-logind; do
    mkdir -p /etc/systemd/system/$u.service.d
    printf '[Unit]\nAfter=pv.service\n' > /etc/systemd/system/$u.service.d/pv-after.conf
done
echo pv > /etc/hostname
printf '127.0.0.1\tlocalhost\n127.0.1.1\tpv\n::1\tlocalhost ip6-localhost ip6-loopback\n' > /etc/hosts

# The admin: key-only SSH login (its key from the user data), pvctl through
# the pv-admin group, sudo without a password as on Debian's own AMIs.
if ! id "$ADMIN" >/dev/null 2>&1; then
    adduser --quiet --disabled-password --gecos "pv appliance admin" "$ADMIN"
fi
usermod -a -G pv-admin,adm,systemd-journal "$ADMIN"
echo "$ADMIN ALL=(ALL) NOPASSWD:ALL" > /etc/sudoers.d/90-pv-admin
chmod 440 /etc/sudoers.d/90-pv-admin
cat > /etc/ssh/sshd_config.d/pv-appliance.conf <<'SSHD'
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
SSHD

systemctl enable systemd-networkd.service systemd-resolved.service ssh.service \
    pv.service pv-firstboot.service pv-setup.service pv-admin-account.service >/dev/null 2>&1
# the first boot waits for the network (user data), but for one link only
mkdir -p /etc/systemd/system/systemd-networkd-wait-online.service.d
cat > /etc/systemd/system/systemd-networkd-wait-online.service.d/pv.conf <<'WAIT'
[Service]
ExecStart=
ExecStart=/lib/systemd/systemd-networkd-wait-online --any --timeout=30
WAIT
# the journal stays on disk, but small
mkdir -p /etc/systemd/journald.conf.d
printf '[Journal]\nStorage=persistent\nSystemMaxUse=64M\n' > /etc/systemd/journald.conf.d/pv.conf
# nothing on the box needs these at boot
systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service \
    >/dev/null 2>&1 || true

# No secrets and no identity in the image: each machine makes its own.
# (On Packer's instance pvd has started and made keys: stop it first.)
if [ -d /run/systemd/system ]; then
    systemctl stop pv.service pv-admin-account.service >/dev/null 2>&1 || true
fi
passwd -l root >/dev/null
rm -f /etc/ssh/ssh_host_*
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
rm -rf /var/lib/pv/* /var/lib/pv-firstboot /root/.ssh "/home/$ADMIN/.ssh" /root/pv-admin-password

# Size: what was already installed before the exclusions, and caches.
find /usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
find /usr/share/doc -mindepth 1 -type d -empty -delete 2>/dev/null || true
find /usr/share/man -type f -not -name "pv*" -delete 2>/dev/null || true
rm -rf /usr/share/info/* /usr/share/lintian
find /usr/share/locale -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/lib/dpkg/*-old
find /var/log -type f -delete
echo "provision.sh: done"
