"""Read-only handlers: users, device info, sys, and the cm (device, device group, failover) endpoints.

Shapes follow real units: `cm/failover-status` and `sys/version` are stats (`entries` of `nestedStats`),
`cm/device` lists every device of the trust domain with `selfDevice: "true"` on the unit answering,
`cm/device-group` carries `type` and `autoSync` (fixtures/bigip/load_device_group.json), and
`sys/failover` answers tmsh's one line in `apiRawValues.apiAnonymous`.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from controller.sim.bigip import shapes
from controller.sim.bigip.errors import err
from controller.sim.bigip.ha import LOCAL_ONLY, STATUS_OF
from controller.sim.bigip.state import Request, uri_to_full_path

if TYPE_CHECKING:
    from controller.sim.bigip.emulator import BigIPEmulator

Result = tuple[int, Any]
_NS = uuid.UUID("0b9f6e4e-8f1a-4c55-9f7e-8d1c2a3b4c5d")
_SYS_SUBS = ("application", "crypto", "daemon-log-settings", "db", "disk", "dns", "failover", "file", "folder",
             "global-settings", "hardware", "httpd", "log-config", "management-ip", "ntp", "performance",
             "provision", "service", "snmp", "software", "sshd", "syslog", "version")


def _user_json(emu: BigIPEmulator, user: str, tm: bool) -> dict[str, Any]:
    if user not in emu.users:
        raise err("user_not_found_404", user=user)
    access = [{"name": "all-partitions", "role": emu.role(user)}]
    if tm:
        return {"kind": "tm:auth:user:userstate", "name": user, "fullPath": user, "generation": 1,
                "selfLink": emu._link(f"/mgmt/tm/auth/user/{user}"), "description": user,
                "encryptedPassword": "$6$emulator$", "partitionAccess": access, "shell": "none"}
    return {"name": user, "displayName": user, "shell": "none", "partitionAccess": access,
            "generation": 1, "lastUpdateMicros": 0, "kind": "shared:authz:users:usersworkerstate",
            "selfLink": f"https://localhost/mgmt/shared/authz/users/{user}"}


def shared_user(emu: BigIPEmulator, req: Request, user: str) -> Result:
    return 200, _user_json(emu, user, tm=False)


def tm_user(emu: BigIPEmulator, req: Request, user: str) -> Result:
    return 200, _user_json(emu, user, tm=True)


def device_info(emu: BigIPEmulator, req: Request) -> Result:
    return 200, {
        "baseMac": "52:54:00:12:34:56", "hostname": emu.hostname, "machineId": str(uuid.uuid5(_NS, emu.hostname)),
        "address": emu.management_ip, "build": emu.build, "product": "BIG-IP",
        "platformMarketingName": "BIG-IP Virtual Edition", "version": emu.version, "edition": "Final",
        "managementAddress": emu.management_ip, "mcpDeviceName": f"/Common/{emu.hostname}",
        "isClustered": bool(emu.peers), "isVirtual": True, "hypervisorType": "KVM", "physicalMemory": 8192,
        "platform": "Z100", "restFrameworkVersion": f"{emu.version}-{emu.build}", "generation": 0,
        "lastUpdateMicros": 0, "kind": "shared:resolver:device-groups:deviceinfostate",
        "selfLink": "https://localhost/mgmt/shared/identified-devices/config/device-info",
    }


def sys(emu: BigIPEmulator, req: Request) -> Result:
    return 200, {"kind": "tm:sys:syscollectionstate", "selfLink": emu._link("/mgmt/tm/sys"),
                 "items": [{"reference": {"link": emu._link(f"/mgmt/tm/sys/{s}")}} for s in _SYS_SUBS]}


def _stats(emu: BigIPEmulator, kind: str, path: str, entries: dict[str, Any]) -> dict[str, Any]:
    return {"kind": kind, "selfLink": emu._link(path),
            "entries": {f"https://localhost{path}/0": {"nestedStats": {"entries": entries}}}}


def sys_version(emu: BigIPEmulator, req: Request) -> Result:
    e = {"Build": emu.build, "Date": "Thu Oct 12 16:25:50 PDT 2023", "Edition": "Final", "Product": "BIG-IP",
         "Title": "Main Package", "Version": emu.version}
    return 200, _stats(emu, "tm:sys:version:versionstats", "/mgmt/tm/sys/version",
                       {k: {"description": v} for k, v in e.items()})


def sys_failover(emu: BigIPEmulator, req: Request) -> Result:
    secs = int(max(emu.now() - emu.failover_since, 0))
    d, rest = divmod(secs, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    line = f"Failover {emu.failover_state} for {d}d {h:02d}:{m:02d}:{s:02d}\n"
    return 200, {"kind": "tm:sys:failover:failoverstats", "selfLink": emu._link("/mgmt/tm/sys/failover"),
                 "apiRawValues": {"apiAnonymous": line}}


def failover_status(emu: BigIPEmulator, req: Request) -> Result:
    state = emu.failover_state
    status = STATUS_OF[state]
    color = {"active": "green", "standby": "blue"}.get(state, "red")
    detail_path = "https://localhost/mgmt/tm/cm/failoverStatus/0/details"
    groups = emu.own_traffic_groups() if state in ("active", "standby") else {}
    lines = [f"{s} for {g}" for g, s in sorted(groups.items())] or [f"{state} (no floating traffic group)"]
    details = {"nestedStats": {"entries": {f"{detail_path}/{i}": {"nestedStats": {"entries": {
        "details": {"description": line}}}} for i, line in enumerate(lines)}}}
    summary = "1/1 active" if state == "active" else f"0/1 {state}"
    return 200, _stats(emu, "tm:cm:failover-status:failover-statusstats", "/mgmt/tm/cm/failover-status", {
        "color": {"description": color}, detail_path: details, "status": {"description": status},
        "summary": {"description": summary}})


def sync_status(emu: BigIPEmulator, req: Request) -> Result:
    group = emu.failover_group()
    if group is None:
        status, color, mode = "Standalone", "green", "standalone"
    elif emu.sync_pending:
        status, color, mode = "Changes Pending", "yellow", "high-availability"
    else:
        status, color, mode = "In Sync", "green", "high-availability"
    return 200, _stats(emu, "tm:cm:sync-status:sync-statusstats", "/mgmt/tm/cm/sync-status", {
        "color": {"description": color}, "mode": {"description": mode}, "status": {"description": status},
        "summary": {"description": status}})


def _device_json(emu: BigIPEmulator, unit: BigIPEmulator, self_device: bool) -> dict[str, Any]:
    name = unit.hostname
    return {
        "kind": "tm:cm:device:devicestate", "name": name, "partition": "Common", "fullPath": f"/Common/{name}",
        "generation": 1, "selfLink": emu._link(f"/mgmt/tm/cm/device/~Common~{name}"),
        "activeModules": [], "baseMac": "52:54:00:12:34:56", "build": unit.build, "cert": "/Common/dtdi.crt",
        "chassisId": str(uuid.uuid5(_NS, name))[:23], "chassisType": "individual",
        "configsyncIp": unit.management_ip, "edition": "Final", "failoverState": unit.failover_state,
        "haCapacity": 0, "hostname": name, "key": "/Common/dtdi.key", "managementIp": unit.management_ip,
        "marketingName": "BIG-IP Virtual Edition", "mirrorIp": "any6", "mirrorSecondaryIp": "any6",
        "platformId": "Z100", "product": "BIG-IP", "selfDevice": "true" if self_device else "false",
        "timeLimitedModules": [], "timeZone": "UTC", "version": unit.version,
    }


def devices(emu: BigIPEmulator, req: Request) -> Result:
    items = [_device_json(emu, emu, True)] + [_device_json(emu, p, False) for p in emu.peers]
    return 200, shapes.collection(emu, req, "tm:cm:device:devicecollectionstate", "/mgmt/tm/cm/device", items)


def device(emu: BigIPEmulator, req: Request, name: str) -> Result:
    short = uri_to_full_path(name).rsplit("/", 1)[-1]
    for unit in [emu, *emu.peers]:
        if unit.hostname == short:
            return 200, _device_json(emu, unit, unit is emu)
    raise err("object_not_found_404", path=f"/Common/{short}")


def _dg_json(emu: BigIPEmulator, g: dict[str, Any]) -> dict[str, Any]:
    name = g["name"]
    d = {"kind": "tm:cm:device-group:device-groupstate", "name": name, "partition": "Common",
         "fullPath": f"/Common/{name}", "generation": 1,
         "selfLink": emu._link(f"/mgmt/tm/cm/device-group/~Common~{name}"), "asmSync": "disabled",
         "autoSync": g["autoSync"], "fullLoadOnSync": "false", "incrementalConfigSyncSizeMax": 1024,
         "networkFailover": "enabled" if g["type"] == "sync-failover" else "disabled",
         "saveOnAutoSync": "false", "type": g["type"],
         "devicesReference": {"link": emu._link(f"/mgmt/tm/cm/device-group/~Common~{name}/devices"),
                              "isSubcollection": True}}
    d.update({k: v for k, v in g.items() if k not in ("name", "type", "autoSync", "devices")})
    return d


def _group(emu: BigIPEmulator, name: str) -> dict[str, Any]:
    short = uri_to_full_path(name).rsplit("/", 1)[-1]
    with emu._lock:
        for g in emu._device_groups:
            if g["name"] == short:
                return g
    raise err("object_not_found_404", path=f"/Common/{short}")


def device_groups(emu: BigIPEmulator, req: Request) -> Result:
    with emu._lock:
        items = [_dg_json(emu, g) for g in emu._device_groups]
    return 200, shapes.collection(emu, req, "tm:cm:device-group:device-groupcollectionstate",
                                  "/mgmt/tm/cm/device-group", items)


def device_group(emu: BigIPEmulator, req: Request, name: str) -> Result:
    return 200, _dg_json(emu, _group(emu, name))


def device_group_devices(emu: BigIPEmulator, req: Request, name: str) -> Result:
    g = _group(emu, name)
    path = f"/mgmt/tm/cm/device-group/~Common~{g['name']}/devices"
    items = [{"kind": "tm:cm:device-group:devices:devicesstate", "name": d.rsplit("/", 1)[-1], "partition": "Common",
              "fullPath": d, "generation": 1, "selfLink": emu._link(f"{path}/{d.replace('/', '~')}")}
             for d in g.get("devices", [])]
    return 200, shapes.collection(emu, req, "tm:cm:device-group:devices:devicescollectionstate", path, items)


def traffic_groups(emu: BigIPEmulator, req: Request) -> Result:
    """`GET /mgmt/tm/cm/traffic-group`: the floating traffic groups of the trust domain and local-only."""
    names = {LOCAL_ONLY, *(g for unit in [emu, *emu.peers] for g in unit.own_traffic_groups())}
    items = [{"kind": "tm:cm:traffic-group:traffic-groupstate", "name": n.rsplit("/", 1)[-1], "partition": "Common",
              "fullPath": n, "generation": 1, "selfLink": emu._link(f"/mgmt/tm/cm/traffic-group/{n.replace('/', '~')}"),
              "autoFailbackEnabled": "false", "autoFailbackTime": 60, "failoverMethod": "ha-order",
              "haLoadFactor": 1, "isFloating": "false" if n == LOCAL_ONLY else "true", "mac": "none"}
             for n in sorted(names)]
    return 200, shapes.collection(emu, req, "tm:cm:traffic-group:traffic-groupcollectionstate",
                                  "/mgmt/tm/cm/traffic-group", items)


def traffic_group_stats(emu: BigIPEmulator, req: Request) -> Result:
    """`GET /mgmt/tm/cm/traffic-group/stats`: one row per (traffic group, device) with `failoverState`, as
    `tmsh show cm traffic-group` (and cloud failover tools) read it. Each unit reports the whole trust domain."""
    path = "/mgmt/tm/cm/traffic-group/stats"
    entries: dict[str, Any] = {}
    for unit in [emu, *emu.peers]:
        device = f"/Common/{unit.hostname}"
        rows = {LOCAL_ONLY: "active", **unit.own_traffic_groups()}
        for group, state in rows.items():
            key = f"https://localhost/mgmt/tm/cm/traffic-group/{group.replace('/', '~')}:{device.replace('/', '~')}/stats"
            entries[key] = {"nestedStats": {"entries": {
                "deviceName": {"description": device}, "failoverState": {"description": state},
                "nextActive": {"description": "false" if state == "active" or group == LOCAL_ONLY else "true"},
                "trafficGroup": {"description": group}}}}
    return 200, {"kind": "tm:cm:traffic-group:traffic-groupcollectionstats", "selfLink": emu._link(path),
                 "entries": entries}


def as3_declare(emu: BigIPEmulator, req: Request) -> Result:
    if emu.as3_declaration is None:
        raise err("as3_not_installed_404")
    return 200, emu.as3_declaration
