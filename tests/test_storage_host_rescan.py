"""The host side of a LUN expansion (remotehands.storage.hostside) at the wire: our driver over SSH (HostSsh,
pinned host keys) against the lab's ESXi and Linux hosts on 127.0.0.1, which share LUNs through the lab's SAN
(remotehands.lab.san) and answer the storage commands as the real tools print them.

Three LUNs: a VMFS datastore shared by two ESXi hosts; LVM + ext4 on an active/passive Linux pair (mounted on
the first); xfs directly on the multipath device of a third LUN, on the active Linux host only. A test grows a
LUN as an array does (its ``size``, holding the SAN's lock) and drives the hosts; it changes what a host has
(a path down, a map's name, another PV in the VG) through the SAN, as an operator would on a real one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pytest_mock import MockerFixture

from remotehands.errors import DeviceRefused, InvalidRequest, VerificationFailed
from remotehands.inventory.models import LunUse
from remotehands.lab.bmc_sim import CommandLog
from remotehands.lab.san import GiB, MiB, San, SanLun
from remotehands.lab.ssh_host import SshHosts
from remotehands.ssh.client import HostSsh
from remotehands.ssh.keys import PinnedKey
from remotehands.storage import hostside

PASSWORD = "lab-Secret-42x"
VMFS = "naa.600a098038305674695d51694b427849"
LVM = "naa.624a9370b1c2d3e4f5a6b7c8d9e0f1a2"
XFS = "naa.68ccf098001234567890abcdef012345"
DS = LunUse(hosts=("esx-a", "esx-b"), datastore="ds-ontap-01")
DATA = LunUse(hosts=("lin-a", "lin-b"), mount="/srv/data", lv="vg_data/lv_data")
# The partition's first MiB (GPT, alignment) and the backup GPT at the end, rounded to whole MiB as VMFS
# uses them.
MiB_FOR_GPT = 2 * 1024**2
XFS_USE = LunUse(hosts=("lin-a",), mount="/srv/xfs")
KIND: dict[str, hostside.HostKind] = {
    "esx-a": "esxi",
    "esx-b": "esxi",
    "esx-c": "esxi",  # mapped to no LUN
    "lin-a": "linux",
    "lin-b": "linux",
}


class Lab:
    def __init__(self, hosts: SshHosts, san: San, log: Path) -> None:
        self.hosts, self.san, self.log = hosts, san, log

    @contextmanager
    def ssh(self, name: str, user: str | None = None) -> Iterator[HostSsh]:
        key = self.hosts.host_key(name)
        pin = PinnedKey(key.get_name(), key.get_base64(), "inventory")
        user = user or ("root" if KIND[name] == "esxi" else "admin")
        with HostSsh(name, "127.0.0.1", self.hosts.port(name), user, password=PASSWORD, expected=pin) as ssh:
            yield ssh

    def grow_lun(self, naa: str, size: int) -> SanLun:
        """What an array simulator does when it grows a LUN."""
        with self.san.lock:
            lun = self.san.luns[naa]
            lun.size = size
            return lun

    def events(self, command: str) -> list[dict[str, object]]:
        lines = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [line for line in lines if line["command"] == command]


@contextmanager
def running_lab(tmp_path: Path, friendly_names: set[str] | None = None) -> Iterator[Lab]:
    hosts = SshHosts(PASSWORD, command_log=CommandLog(tmp_path / "log.jsonl"), boot_delay=0.01)
    san = hosts.san = San(friendly_names=friendly_names or set())
    for i, name in enumerate(KIND):
        hosts.add_host(name, KIND[name], serial=f"LAB09{i}")
    san.add_lun(VMFS, 100 * GiB, DS.hosts)
    san.format_vmfs(VMFS, "ds-ontap-01", used=20 * GiB)
    san.add_lun(LVM, 100 * GiB, DATA.hosts)
    san.format_linux(LVM, "ext4", "/srv/data", lv="vg_data/lv_data", active_host="lin-a", used=20 * GiB)
    san.add_lun(XFS, 50 * GiB, XFS_USE.hosts)
    san.format_linux(XFS, "xfs", "/srv/xfs", used=GiB)
    hosts.start()
    try:
        for name in hosts.names():
            assert hosts.wait_until(name, timeout=5)
        yield Lab(hosts, san, tmp_path / "log.jsonl")
    finally:
        hosts.stop()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with running_lab(tmp_path) as started:
        yield started


def look(lab: Lab, host: str, naa: str, use: LunUse) -> hostside.HostView:
    with lab.ssh(host) as ssh:
        return hostside.look(ssh, KIND[host], naa, use)


def rescan(lab: Lab, host: str, naa: str) -> int:
    with lab.ssh(host) as ssh:
        return hostside.rescan(ssh, KIND[host], naa)


def grow(lab: Lab, host: str, naa: str, use: LunUse) -> str:
    with lab.ssh(host) as ssh:
        return hostside.grow(ssh, KIND[host], naa, use)


def test_hosts_see_the_old_size_until_they_rescan(lab: Lab) -> None:
    for naa, use in ((VMFS, DS), (LVM, DATA)):
        lab.grow_lun(naa, 150 * GiB)
        for host in use.hosts:
            assert look(lab, host, naa, use).device_size == 100 * GiB, host
            assert rescan(lab, host, naa) == 150 * GiB, host
            assert look(lab, host, naa, use).device_size == 150 * GiB, host
    assert rescan(lab, "lin-a", LVM) == 150 * GiB  # harmless to repeat
    assert look(lab, "esx-a", VMFS, DS) == hostside.HostView(
        150 * GiB, 100 * GiB - MiB_FOR_GPT, "datastore ds-ontap-01", "vmfs"
    )
    assert look(lab, "lin-b", LVM, DATA) == hostside.HostView(150 * GiB, None, "/srv/data (not mounted here)")
    rescans = lab.events("lun_rescan")
    assert {e["host"] for e in rescans} == {"esx-a", "esx-b", "lin-a", "lin-b"}
    assert {e["path"] for e in rescans if e["host"] == "lin-a"} == {"sdb", "sdc"}


def test_esxi_grow_on_one_host_and_refresh_on_the_other(lab: Lab) -> None:
    lab.grow_lun(VMFS, 150 * GiB)
    assert "nothing to grow" in grow(lab, "esx-a", VMFS, DS)  # not rescanned yet: it sees no room
    for host in DS.hosts:
        rescan(lab, host, VMFS)
    said = grow(lab, "esx-a", VMFS, DS)
    assert said.startswith("datastore ds-ontap-01 grown from 100.0 GiB to 150.0 GiB"), said
    assert look(lab, "esx-a", VMFS, DS).fs_size == 150 * GiB - MiB_FOR_GPT
    assert look(lab, "esx-b", VMFS, DS).fs_size == 100 * GiB - MiB_FOR_GPT  # it has not read the metadata yet
    with lab.ssh("esx-b") as ssh:
        said = hostside.refresh(ssh, "esxi", VMFS, DS)
    assert said == "datastore ds-ontap-01 shows 150.0 GiB after vmkfstools -V (the LUN seen at 150 GiB)", said
    assert look(lab, "esx-b", VMFS, DS).fs_size == 150 * GiB - MiB_FOR_GPT
    again = grow(lab, "esx-a", VMFS, DS)
    assert again.startswith("datastore ds-ontap-01 already fills") and again.endswith("nothing to grow"), (
        again
    )
    assert [e["end"] for e in lab.events("partition_resize")] == [150 * GiB // 512 - 34]
    assert [e["host"] for e in lab.events("vmfs_grow")] == ["esx-a"]
    assert [e["host"] for e in lab.events("vmfs_refresh")] == ["esx-b"]


def test_linux_grow_on_the_active_host_grows_pv_lv_and_ext4(lab: Lab) -> None:
    before = look(lab, "lin-a", LVM, DATA)
    assert before.where == "/srv/data (ext4 on vg_data/lv_data)" and before.fs_size is not None
    lab.grow_lun(LVM, 150 * GiB)
    for host in DATA.hosts:
        rescan(lab, host, LVM)
    said = grow(lab, "lin-a", LVM, DATA)
    assert said.startswith("/srv/data (ext4 on vg_data/lv_data) grown from 98.4 GiB to 147.7 GiB"), said
    assert "PV <100.0 GiB -> <150.0 GiB" not in said and "PV 100.0 GiB -> 150.0 GiB" in said, said
    assert "LV 100.0 GiB -> 150.0 GiB" in said and "ext4 grown by resize2fs" in said, said
    after = look(lab, "lin-a", LVM, DATA)
    assert after.device_size == 150 * GiB and after.fs_size is not None and after.fs_size > before.fs_size
    passive = grow(lab, "lin-b", LVM, DATA)
    assert passive == "/srv/data is not mounted here: nothing to grow on this host (the LUN seen at 150 GiB)"
    again = grow(lab, "lin-a", LVM, DATA)
    assert again.endswith("nothing to grow") and "already fills the LUN" in again, again
    assert look(lab, "lin-a", LVM, DATA) == after
    assert [e["command"] for e in lab.events("pv_resize") + lab.events("lv_extend")] == [
        "pv_resize",
        "lv_extend",
    ]
    assert [(e["host"], e["fstype"]) for e in lab.events("fs_grow")] == [("lin-a", "ext4")]
    with lab.ssh("lin-b") as ssh:
        assert "nothing to refresh" in hostside.refresh(ssh, "linux", LVM, DATA)


def test_linux_grows_xfs_directly_on_the_multipath_device(lab: Lab) -> None:
    before = look(lab, "lin-a", XFS, XFS_USE)
    assert before.where == f"/srv/xfs (xfs on /dev/mapper/3{XFS[4:]})"
    lab.grow_lun(XFS, 80 * GiB)
    assert "nothing to grow" in grow(lab, "lin-a", XFS, XFS_USE)  # the map is still 50 GiB
    assert rescan(lab, "lin-a", XFS) == 80 * GiB
    said = grow(lab, "lin-a", XFS, XFS_USE)
    where = f"/srv/xfs (xfs on /dev/mapper/3{XFS[4:]})"
    assert said == f"{where} grown from 49.9 GiB to 79.9 GiB (xfs grown by xfs_growfs)", said
    assert look(lab, "lin-a", XFS, XFS_USE).fs_size == 80 * GiB - 64 * 1024**2  # less the internal log
    assert "nothing to grow" in grow(lab, "lin-a", XFS, XFS_USE)


def test_a_failing_rescan_names_the_host_and_the_command(lab: Lab) -> None:
    lab.grow_lun(VMFS, 150 * GiB)
    lab.grow_lun(LVM, 150 * GiB)
    lab.hosts.set_fault("esx-b", "san_rescan_fails")
    lab.hosts.set_fault("lin-b", "san_rescan_fails")
    with pytest.raises(DeviceRefused) as esxi:
        rescan(lab, "esx-b", VMFS)
    assert (
        "esx-b: 'esxcli storage core adapter rescan --all' failed (exit 1): Error: Unable to rescan"
        in str(esxi.value)
    )
    with pytest.raises(DeviceRefused) as linux:
        rescan(lab, "lin-b", LVM)
    text = str(linux.value)
    assert "lin-b: 'sudo -n tee /sys/class/scsi_device/3:0:0:0/device/rescan' failed (exit 1)" in text, text
    assert "No such device" in text
    assert look(lab, "esx-b", VMFS, DS).device_size == 100 * GiB
    assert look(lab, "lin-b", LVM, DATA).device_size == 100 * GiB
    lab.hosts.set_fault("lin-b", "san_rescan_fails", enabled=False)
    assert rescan(lab, "lin-b", LVM) == 150 * GiB


def test_a_host_that_does_not_see_the_lun_is_told_clearly(lab: Lab) -> None:
    with pytest.raises(DeviceRefused) as esxi:
        look(lab, "esx-c", VMFS, DS)
    command = f"esxcli storage core device list -d {VMFS}"
    assert str(esxi.value).startswith(
        f"esx-c does not see LUN {VMFS}: '{command}' says: Error: Unknown device"
    )
    with pytest.raises(DeviceRefused) as linux:
        rescan(lab, "lin-b", XFS)
    assert f"lin-b does not see LUN {XFS}: 'sudo -n multipath -ll 3{XFS[4:]}' lists no multipath map" in str(
        linux.value
    )
    with pytest.raises(InvalidRequest):
        look(lab, "lin-a", "naa.XYZ", XFS_USE)


def test_an_inventory_that_disagrees_with_the_host_is_refused(lab: Lab) -> None:
    with pytest.raises(VerificationFailed) as datastore:
        look(lab, "esx-a", VMFS, DS.model_copy(update={"datastore": "ds-other"}))
    assert f"esx-a: LUN {VMFS} holds datastore ds-ontap-01, not ds-other" in str(datastore.value)
    assert "esxcli storage vmfs extent list" in str(datastore.value)
    with pytest.raises(VerificationFailed) as mount:
        look(lab, "lin-a", XFS, XFS_USE.model_copy(update={"lv": "vg_xfs/lv_xfs"}))
    assert "/srv/xfs is mounted from /dev/mapper/3" in str(mount.value) and "findmnt" in str(mount.value)


def test_the_lab_tools_refuse_as_the_real_ones_do(lab: Lab) -> None:
    wwid = "3" + LVM[4:]
    with lab.ssh("lin-a") as ssh:
        assert ssh.run(f"multipath -ll {wwid}").stderr == "need to be root\n"
        denied = ssh.run("tee /sys/block/sdb/device/rescan", stdin=b"1\n")
        assert (denied.exit_status, denied.stderr) == (
            1,
            "tee: /sys/block/sdb/device/rescan: Permission denied\n",
        )
        assert ssh.run(f"pvresize /dev/mapper/{wwid}").exit_status == 5
        listed = ssh.run(f"sudo multipath -ll {wwid}").stdout.splitlines()
        assert listed[:2] == [
            f"{wwid} dm-0 LAB,VIRTUAL-LUN",
            "size=100G features='1 queue_if_no_path' hwhandler='1 alua' wp=rw",
        ]
        assert listed[3] == "| `- 3:0:0:0 sdb 8:16 active ready running"
        lab.grow_lun(LVM, 150 * GiB)
        ssh.run("sudo tee /sys/block/sdb/device/rescan", stdin=b"1\n")
        half = ssh.run(f"sudo multipathd resize map {wwid}")  # sdc still shows the old size
        assert (half.exit_status, half.stdout) == (1, "fail\n")
        wrapped = ssh.run("df -B1 /srv/xfs/sub").stdout.splitlines()  # a long name on a line of its own
        assert wrapped[1] == f"/dev/mapper/3{XFS[4:]}" and wrapped[2].split()[-1] == "/srv/xfs"
        posix = [line.split() for line in ssh.run("df -P -B1 /srv/xfs/sub").stdout.splitlines()]
        assert posix[0] == ["Filesystem", "1-blocks", "Used", "Available", "Capacity", "Mounted", "on"]
        assert len(posix) == 2 and posix[1][0] == f"/dev/mapper/3{XFS[4:]}" and posix[1][-1] == "/srv/xfs"
    with lab.ssh("lin-b") as ssh:
        assert ssh.run("findmnt /srv/data").exit_status == 1
        assert ssh.run("df -B1 /srv/data").stdout.splitlines()[-1].endswith(" /")  # the directory, on /
        pv = ssh.run(f"sudo resize2fs /dev/mapper/{wwid}")  # the PV, not a filesystem
        assert pv.exit_status == 1 and "Bad magic number in super-block" in pv.stderr
        inactive = ssh.run("sudo resize2fs /dev/mapper/vg_data-lv_data")  # the LV is active on lin-a only
        assert "No such file or directory while trying to open" in inactive.stderr
        xfs = ssh.run("sudo xfs_growfs -d /srv/data")
        assert xfs.stderr == "xfs_growfs: /srv/data is not a mounted XFS filesystem\n"
    with lab.ssh("esx-a") as ssh:
        lab.grow_lun(VMFS, 150 * GiB)
        ssh.run("esxcli storage core adapter rescan --all")
        table = ssh.run(f"partedUtil getptbl /vmfs/devices/disks/{VMFS}")
        assert table.stdout.splitlines() == [
            "gpt",
            "19581 255 63 314572800",
            f"1 2048 209715166 {'AA31E02A400F11DB9590000C2911D1B8'} vmfs 0",
        ]
        assert "The backup GPT table is not at the end of the disk" in table.stderr
        assert ssh.run(f"partedUtil getUsableSectors /vmfs/devices/disks/{VMFS}").stdout == "34 314572766\n"
        outside = ssh.run(f"partedUtil resize /vmfs/devices/disks/{VMFS} 1 2048 314572800")
        assert (outside.exit_status, outside.stderr) == (
            255,
            "Error: Can't have a partition outside the disk!\n",
        )


def test_linux_maps_named_mpathn_or_by_an_alias_are_used_by_their_name(tmp_path: Path) -> None:
    wwid = "3" + LVM[4:]
    with running_lab(tmp_path, friendly_names={"lin-a"}) as lab:
        lab.san.alias_map(LVM, "lin-b", "data_pv")  # multipath.conf: multipaths { multipath { alias ...
        with lab.ssh("lin-a") as ssh:
            assert ssh.run(f"sudo multipath -ll {wwid}").stdout.splitlines()[0] == (
                f"mpatha ({wwid}) dm-0 LAB,VIRTUAL-LUN"
            )
            lab.grow_lun(LVM, 150 * GiB)
            for disk in ("sdb", "sdc"):
                ssh.run(f"sudo tee /sys/block/{disk}/device/rescan", stdin=b"1\n")
            by_wwid = ssh.run(f"sudo multipathd resize map {wwid}")  # multipathd finds a map by its name
            assert (by_wwid.exit_status, by_wwid.stdout) == (1, "fail\n")
            assert ssh.run(f"sudo blockdev --getsize64 /dev/mapper/{wwid}").exit_status == 1
        assert look(lab, "lin-a", XFS, XFS_USE).where == "/srv/xfs (xfs on /dev/mapper/mpathb)"
        assert look(lab, "lin-b", LVM, DATA).device_size == 100 * GiB
        for host in DATA.hosts:
            assert rescan(lab, host, LVM) == 150 * GiB, host
        said = grow(lab, "lin-a", LVM, DATA)
        assert "PV 100.0 GiB -> 150.0 GiB" in said and "LV 100.0 GiB -> 150.0 GiB" in said, said
        lab.grow_lun(XFS, 60 * GiB)
        assert rescan(lab, "lin-a", XFS) == 60 * GiB
        said = grow(lab, "lin-a", XFS, XFS_USE)
        assert said.startswith("/srv/xfs (xfs on /dev/mapper/mpathb) grown from 49.9 GiB to 59.9 GiB"), said
        resized = [(e["host"], e["naa"]) for e in lab.events("multipath_resize")]
        assert resized == [("lin-a", LVM), ("lin-b", LVM), ("lin-a", XFS)]


def test_linux_rescan_leaves_out_a_failed_path_and_says_so(lab: Lab) -> None:
    lab.san.fail_path(LVM, "lin-a", "sdc")
    with lab.ssh("lin-a") as ssh:
        assert ssh.run(f"sudo multipath -ll 3{LVM[4:]}").stdout.splitlines()[4:] == [
            "`-+- policy='service-time 0' prio=0 status=enabled",
            "  `- 4:0:0:0 sdc 8:32 failed faulty offline",
        ]
        dead = ssh.run("sudo tee /sys/block/sdc/device/rescan", stdin=b"1\n")
        assert (dead.exit_status, dead.stderr) == (1, "tee: /sys/block/sdc/device/rescan: No such device\n")
    lab.grow_lun(LVM, 150 * GiB)
    assert rescan(lab, "lin-a", LVM) == 150 * GiB
    assert [e["path"] for e in lab.events("lun_rescan")] == ["sdb"]
    where = "/srv/data (ext4 on vg_data/lv_data; path sdc failed faulty offline, skipped)"
    assert look(lab, "lin-a", LVM, DATA).where == where
    said = grow(lab, "lin-a", LVM, DATA)
    assert said.startswith(f"{where} grown from 98.4 GiB to 147.7 GiB"), said
    lab.san.fail_path(LVM, "lin-a", "sdb")
    with pytest.raises(DeviceRefused) as down:
        rescan(lab, "lin-a", LVM)
    assert f"no path of multipath map 3{LVM[4:]} (LUN {LVM}) is active ready running: sdb failed faulty " in (
        str(down.value)
    )


def test_lvextend_takes_the_free_extents_of_the_luns_pv_only(lab: Lab) -> None:
    lab.san.extend_vg(LVM, "/dev/sdz", 10 * GiB)  # a local disk in the VG: 2559 free extents not on the LUN
    assert grow(lab, "lin-a", LVM, DATA).endswith("nothing to grow")
    lab.grow_lun(LVM, 150 * GiB)
    rescan(lab, "lin-a", LVM)
    said = grow(lab, "lin-a", LVM, DATA)
    assert "LV 100.0 GiB -> 150.0 GiB" in said, said
    assert grow(lab, "lin-a", LVM, DATA).endswith("nothing to grow")
    assert len(lab.events("lv_extend")) == 1
    with lab.ssh("lin-a") as ssh:
        other = ssh.run("sudo pvs --noheadings -o pv_pe_count,pv_pe_alloc_count /dev/sdz")
        assert other.stdout.split() == ["2559", "0"]
        vg = ssh.run("sudo vgs --noheadings -o pv_count,vg_free_count vg_data")
        assert vg.stdout.split() == ["2", "2559"]
        stranger = ssh.run("sudo lvextend -l +100%PVS vg_data/lv_data /dev/sdq")
        assert (stranger.exit_status, stranger.stderr) == (
            5,
            '  Physical Volume "/dev/sdq" not found in Volume Group "vg_data".\n',
        )
        free = ssh.run(f"sudo lvextend -l +100%FREE vg_data/lv_data /dev/mapper/3{LVM[4:]}")
        assert free.exit_status == 5 and "2559 extents needed, but only 0 available" in free.stderr


def test_pvresize_with_a_second_metadata_area_is_idempotent(lab: Lab) -> None:
    naa, use = "naa.60000970000197900123533030314142", LunUse(hosts=("lin-a",), mount="/srv/mda", lv="vg/lv")
    lab.san.add_lun(naa, 20 * GiB, use.hosts)
    lab.san.format_linux(naa, "ext4", "/srv/mda", lv="vg/lv", metadata_copies=2)
    # 1 MiB over whole extents: the device could hold one more extent but for the metadata area at its end
    lab.grow_lun(naa, 30 * GiB + MiB)
    rescan(lab, "lin-a", naa)
    said = grow(lab, "lin-a", naa, use)
    assert "PV 20.0 GiB -> 30.0 GiB; LV 20.0 GiB -> 30.0 GiB; ext4 grown" in said, said
    again = grow(lab, "lin-a", naa, use)
    assert again.endswith("nothing to grow"), again
    assert len(lab.events("pvresize")) == 2 and len(lab.events("pv_resize")) == 1  # run twice, grown once


def test_slow_commands_wait_longer(lab: Lab, mocker: MockerFixture) -> None:
    spy = mocker.spy(HostSsh, "run")
    for naa, size in ((VMFS, 150 * GiB), (LVM, 150 * GiB), (XFS, 60 * GiB)):
        lab.grow_lun(naa, size)
    for host, naa, use in (("esx-a", VMFS, DS), ("lin-a", LVM, DATA), ("lin-a", XFS, XFS_USE)):
        rescan(lab, host, naa)
        grow(lab, host, naa, use)
    with lab.ssh("esx-b") as ssh:
        hostside.refresh(ssh, "esxi", VMFS, DS)

    def waits(part: str) -> set[float]:
        return {call.kwargs["timeout"] for call in spy.call_args_list if part in call.args[1]}

    rescans = ("adapter rescan", "/device/rescan", "multipathd resize", "vmkfstools -V")
    grows = ("partedUtil resize", "vmkfstools --growfs", "pvresize", "lvextend", "resize2fs", "xfs_growfs")
    for part in rescans:
        assert waits(part) == {600.0}, part
    for part in grows:
        assert waits(part) == {1800.0}, part
    assert waits("blockdev") == waits("multipath -ll") == waits("findmnt") == {60.0}


def test_esxi_grow_finishes_a_grow_that_stopped_after_the_partition_resize(lab: Lab) -> None:
    size = 100 * GiB + 256 * MiB
    lab.grow_lun(VMFS, size)
    rescan(lab, "esx-a", VMFS)
    with lab.ssh("esx-a") as ssh:  # an earlier grow resized the partition, then its worker died
        resized = ssh.run(f"partedUtil resize /vmfs/devices/disks/{VMFS} 1 2048 {size // 512 - 34}")
        assert resized.exit_status == 0, resized.stderr
    said = grow(lab, "esx-a", VMFS, DS)
    assert said.startswith("datastore ds-ontap-01 grown from 100.0 GiB to 100.2 GiB"), said
    assert look(lab, "esx-a", VMFS, DS).fs_size == size - MiB_FOR_GPT
    assert len(lab.events("partition_resize")) == 1 and len(lab.events("vmfs_grow")) == 1
    assert grow(lab, "esx-a", VMFS, DS).endswith("nothing to grow")
