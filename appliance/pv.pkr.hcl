# pv.pkr.hcl — the appliance as an AMI, built on EC2 by Packer from the same
# two things `make image` uses: pv's Debian package and provision.sh.
#
#   make deb
#   packer init appliance/pv.pkr.hcl
#   packer build -var deb=build/pv_0.1.0_amd64.deb -var region=eu-west-1 appliance/pv.pkr.hcl
#
# It starts Debian's own Debian 12 AMI (owner 136693071363: the Debian
# cloud team), uploads the package and the script, runs the script as root,
# and snapshots the instance. The result boots under BIOS and UEFI
# (uefi-preferred), with ENA and IMDSv2 required; the first boot of each
# instance makes its own host keys and reads its user data (README.md).
packer {
  required_plugins {
    amazon = {
      version = ">= 1.2.0"
      source  = "github.com/hashicorp/amazon"
    }
  }
}

variable "deb" {
  type        = string
  description = "pv's package: build/pv_VERSION_amd64.deb (make deb)"
}

variable "region" {
  type    = string
  default = "us-east-1"
}

variable "instance_type" {
  type    = string
  default = "t3.small"
}

variable "volume_gb" {
  type    = number
  default = 4
}

locals {
  stamp = formatdate("YYYYMMDD-hhmmss", timestamp())
}

source "amazon-ebs" "pv" {
  region        = var.region
  instance_type = var.instance_type
  ssh_username  = "admin"
  ami_name      = "pv-appliance-${local.stamp}"
  ami_description = "pv: photos in, videos out (Debian 12, pv from its .deb)"

  source_ami_filter {
    filters = {
      name                = "debian-12-amd64-*"
      architecture        = "x86_64"
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    owners      = ["136693071363"]
    most_recent = true
  }

  ena_support  = true
  boot_mode    = "uefi-preferred"
  imds_support = "v2.0"
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  launch_block_device_mappings {
    device_name           = "/dev/xvda"
    volume_size           = var.volume_gb
    volume_type           = "gp3"
    delete_on_termination = true
  }

  tags = {
    Name    = "pv-appliance"
    Builder = "packer appliance/pv.pkr.hcl"
  }
}

build {
  sources = ["source.amazon-ebs.pv"]

  provisioner "file" {
    source      = var.deb
    destination = "/tmp/pv.deb"
  }

  provisioner "file" {
    source      = "${path.root}/provision.sh"
    destination = "/tmp/provision.sh"
  }

  # The same script as `make image` runs in its chroot. It removes the SSH
  # host keys and the admin's authorized keys (Packer's own, here) last.
  provisioner "shell" {
    inline = [
      "sudo sh /tmp/provision.sh /tmp/pv.deb",
      "sudo rm -f /tmp/pv.deb /tmp/provision.sh",
    ]
  }
}
