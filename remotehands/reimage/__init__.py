"""Reimage workflows: per-method step lists for Macs (erase-install, mdm-erase, dfu-restore, netboot) and
x86 hosts (pxe, virtual-media), guarded by the host's identity and verified after."""
