#!/usr/bin/env bash
# Builds a Debian 12 Vagrant box for the libvirt provider from Debian's packages only (no Vagrant
# Cloud): mmdebstrap into a folder, `mkfs.ext4 -d` turns the folder into a file system image
# (no loop device, no mount), qemu-img makes it qcow2. The disk has no partition table and no
# boot loader: the box's own Vagrantfile boots the kernel and initrd shipped beside the disk
# (vagrant-libvirt's kernel/initrd/cmd_line, libvirt's direct kernel boot).
#
# What the box holds is what debian/bookworm64 gives Vagrant: systemd, a `vagrant` user with
# password-less sudo and Vagrant's insecure public key (kept: the box's Vagrantfile sets
# config.ssh.insert_key = false, for a test box on a host-only network),
# openssh-server, rsync, DHCP on eth0 (ifupdown). No Docker: provisioning installs it. Its
# hostname is already the Vagrantfile's (selfheal), so Vagrant has nothing to change there (on
# Debian a change restarts eth0 and renews its DHCP lease).
#
#   deploy/vagrant/build-box.sh OUT.box
# Env: SELFHEAL_VM_MIRROR (http://deb.debian.org/debian), SELFHEAL_VM_SECURITY_MIRROR
#      (http://deb.debian.org/debian-security), SELFHEAL_VM_DISK_GB (20), TMPDIR.
# Needs root, mmdebstrap, e2fsprogs (mkfs.ext4 -d), qemu-utils, curl, tar.
set -euo pipefail

mirror=${SELFHEAL_VM_MIRROR:-http://deb.debian.org/debian}
security_mirror=${SELFHEAL_VM_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
disk_gb=${SELFHEAL_VM_DISK_GB:-20}
# Everything the box needs beyond Debian's required packages.
packages=(systemd-sysv linux-image-amd64 initramfs-tools openssh-server sudo rsync ifupdown
    isc-dhcp-client iproute2 netbase ca-certificates procps less)
# root= is the whole virtio disk; eth0 because ifupdown's config names it; quiet, because every
# line on an emulated serial console costs boot time under QEMU's software emulation.
# tsc=reliable: under QEMU's software emulation the guest sees a CPU (qemu64, vendor AMD) without
# an invariant TSC, so Linux marks the TSC unstable and falls back to the HPET clocksource; every
# clock read is then a system call plus an emulated HPET access instead of a vDSO read, and the
# Go programs inside (dockerd, containerd, runc, Prometheus) read the clock constantly (a
# `docker exec` took 15-20 s, every health check timed out). All vCPUs read the host's own TSC
# under TCG, so it is in fact synchronized. Under KVM, kvm-clock still wins over the TSC.
cmd_line="root=/dev/vda rw console=ttyS0,115200 net.ifnames=0 biosdevname=0 quiet tsc=reliable"

die() { echo "build-box: $*" >&2; exit 1; }
log() { printf '==> %s\n' "$*"; }

out=${1:-}
[[ -n $out ]] || die "usage: $0 OUT.box"
[[ $(id -u) == 0 ]] || die "run as root (mmdebstrap must own the files it unpacks)"
for tool in mmdebstrap mkfs.ext4 qemu-img curl tar; do
    command -v "$tool" >/dev/null || die "$tool not found: apt-get install mmdebstrap e2fsprogs qemu-utils curl tar"
done
key=$(find /usr/share/rubygems-integration/all/gems /usr/share/vagrant /opt/vagrant \
    -path '*/keys/vagrant.pub' 2>/dev/null | head -n 1 || true)
[[ -n $key ]] || die "Vagrant's insecure public key (keys/vagrant.pub) not found: apt-get install vagrant"
# A short question first, so a machine without Debian's archive gets one line, not apt's pages.
curl -fsS -o /dev/null --max-time 5 "$mirror/dists/bookworm/Release" 2>/dev/null ||
    die "cannot reach $mirror (no network?): building the box needs Debian's archive; set SELFHEAL_VM_MIRROR to a mirror that answers"

work=$(mktemp -d "$(dirname "$out")/.box-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
mkdir -p "$work/box"

log "mmdebstrap bookworm into $rootfs (${packages[*]})"
# The hooks run in mmdebstrap's shell, where $1 is the new root. dpkg's unsafe-io and apt without
# translations stay in the box (99mmdebstrap): a throwaway test VM, where an fsync after every
# unpacked file and the translated package descriptions only cost time.
# shellcheck disable=SC2016
mmdebstrap --quiet --variant=minbase --dpkgopt=force-unsafe-io --aptopt='Acquire::Languages "none"' --include="$(IFS=,; echo "${packages[*]}")" \
    --essential-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" && printf "MODULES=list\n" >"$1/etc/initramfs-tools/conf.d/selfheal-box.conf"' \
    --essential-hook='mkdir -p "$1/etc/initramfs-tools" && printf "virtio_pci\nvirtio_blk\nvirtio_net\next4\n" >"$1/etc/initramfs-tools/modules"' \
    --customize-hook='echo selfheal >"$1/etc/hostname" && printf "127.0.0.1 localhost\n127.0.1.1 selfheal\n::1 localhost ip6-localhost ip6-loopback\n" >"$1/etc/hosts"' \
    --customize-hook='printf "/dev/vda / ext4 defaults,errors=remount-ro 0 1\n" >"$1/etc/fstab"' \
    --customize-hook='printf "auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n" >"$1/etc/network/interfaces"' \
    --customize-hook='chroot "$1" useradd --create-home --shell /bin/bash --user-group vagrant' \
    --customize-hook='printf "vagrant ALL=(ALL) NOPASSWD:ALL\n" >"$1/etc/sudoers.d/vagrant" && chmod 0440 "$1/etc/sudoers.d/vagrant"' \
    --customize-hook="install -d -m 0700 \"\$1/home/vagrant/.ssh\" && install -m 0600 '$key' \"\$1/home/vagrant/.ssh/authorized_keys\"" \
    --customize-hook='chroot "$1" chown -R vagrant:vagrant /home/vagrant/.ssh' \
    --customize-hook='printf "UseDNS no\n" >"$1/etc/ssh/sshd_config.d/vagrant.conf"' \
    --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
    --customize-hook='printf "[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n" | install -D -m 0644 /dev/stdin "$1/etc/systemd/system/ssh.service.d/host-keys.conf"' \
    --customize-hook=': >"$1/etc/machine-id"' \
    --customize-hook='chroot "$1" systemctl mask apt-daily.timer apt-daily-upgrade.timer man-db.timer e2scrub_all.timer fstrim.timer' \
    --customize-hook='chroot "$1" apt-get clean' \
    bookworm "$rootfs" \
    "deb $mirror bookworm main" "deb $mirror bookworm-updates main" \
    "deb $security_mirror bookworm-security main" ||
    die "mmdebstrap failed (see above)"

kernel=$(find "$rootfs/boot" -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -n 1)
initrd=$(find "$rootfs/boot" -maxdepth 1 -name 'initrd.img-*' | sort -V | tail -n 1)
[[ -n $kernel && -n $initrd ]] || die "no kernel or initrd in $rootfs/boot"
cp "$kernel" "$work/box/vmlinuz"
cp "$initrd" "$work/box/initrd.img"

log "ext4 image of ${disk_gb} GiB from the folder (mkfs.ext4 -d), then qcow2"
mkfs.ext4 -q -F -L root -d "$rootfs" "$work/disk.raw" "${disk_gb}G"
qemu-img convert -f raw -O qcow2 "$work/disk.raw" "$work/box/box.img"
rm -f "$work/disk.raw"

printf '{"provider": "libvirt", "format": "qcow2", "virtual_size": %d}\n' "$disk_gb" >"$work/box/metadata.json"
cat >"$work/box/Vagrantfile" <<EOF
# Box built by selfheal's deploy/vagrant/build-box.sh: a disk without a boot loader, so libvirt
# boots the kernel and initrd that sit beside it.
Vagrant.configure("2") do |config|
  config.vm.box_check_update = false
  # A local test box, reachable only from this host's libvirt network: Vagrant keeps its
  # insecure key instead of making and inserting a new one (about a minute under emulation).
  config.ssh.insert_key = false
  config.vm.provider "libvirt" do |lv|
    lv.kernel = File.join(__dir__, "vmlinuz")
    lv.initrd = File.join(__dir__, "initrd.img")
    lv.cmd_line = "$cmd_line"
    lv.disk_bus = "virtio"
  end
end
EOF

log "packing $out"
tar -C "$work/box" -cf "$work/box.tar" metadata.json Vagrantfile box.img vmlinuz initrd.img
mv -f "$work/box.tar" "$out"
log "box: $out ($(du -h "$out" | cut -f1))"
