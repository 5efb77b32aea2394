"""High availability: a unit's failover state, its device group, config sync, and an emulated HA pair.

Two `BigIPEmulator` units joined by `HAPair` form one sync-failover device group: one unit is active,
the other standby, and `swap()` fails over. Like BIG-IP, a standby unit still accepts config writes
over REST (each `Write` records the unit's `failover_state`, so tests can count writes that landed on
a standby). With auto-sync on (the default), every config change made over REST on either unit is
pushed to its peer after the request; with auto-sync off the group shows "Changes Pending" until
`sync()` is called. What is synced: pools, members and nodes (not tokens, not transactions). Member
monitor state is copied with the config, a simplification (on BIG-IP each unit monitors on its own).

    pair = HAPair(BigIPEmulator(users, hostname="bigip-a.example.com"),
                  BigIPEmulator(users, hostname="bigip-b.example.com"))
    with pair:                                      # serves on 127.0.0.1:P and 127.0.0.2:P (one port)
        pair.add_pool("/Common/llm", ["10.0.0.1:8000"])
        pair.swap()                                 # b active, a standby
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from controller.sim import tls
from controller.sim.bigip.core import FAILOVER_STATES, EmulatorCore
from controller.sim.bigip.state import Write

if TYPE_CHECKING:
    from controller.sim.bigip.emulator import BigIPEmulator

TRAFFIC_GROUP_1 = "/Common/traffic-group-1"
LOCAL_ONLY = "/Common/traffic-group-local-only"  # active on every unit; never fails over
STATUS_OF = {"active": "ACTIVE", "standby": "STANDBY", "offline": "OFFLINE", "forced-offline": "FORCED OFFLINE"}


class HAUnit(EmulatorCore):
    """The HA side of one unit: failover state, the sync-failover group, and sync to peers."""

    def set_failover_state(self, state: str) -> None:
        """active, standby, offline or forced-offline (what `cm/failover-status` and `cm/device` report)."""
        if state not in FAILOVER_STATES:
            raise ValueError(f"bad failover state {state!r}; expected one of {FAILOVER_STATES}")
        with self._lock:
            if state != self.failover_state:
                self.failover_since = self.now()
            self.failover_state = state

    def own_traffic_groups(self) -> dict[str, str]:
        """Floating traffic group -> this unit's state for it."""
        if self.traffic_groups is not None:
            return dict(self.traffic_groups)
        return {TRAFFIC_GROUP_1: "active" if self.failover_state == "active" else "standby"}

    def add_device_group(self, name: str, type: str = "sync-failover", auto_sync: bool = True,  # noqa: A002 - the REST field name
                         **props: Any) -> None:
        with self._lock:
            self._device_groups.append(dict(name=name, type=type, autoSync="enabled" if auto_sync else "disabled",
                                            **props))

    def failover_group(self) -> dict[str, Any] | None:
        with self._lock:
            return next((g for g in self._device_groups if g["type"] == "sync-failover"), None)

    def set_auto_sync(self, enabled: bool) -> None:
        for unit in [self, *self.peers]:
            g = unit.failover_group()
            if g is not None:
                g["autoSync"] = "enabled" if enabled else "disabled"

    def sync(self) -> None:
        """`tmsh run cm config-sync to-group`: push this unit's config to every peer now."""
        self._push(force=True)

    def _after_request(self) -> None:
        if self._sync_due:
            self._push(force=False)

    def _push(self, force: bool) -> None:
        with self._lock:
            self._sync_due = False
            group = self.failover_group()
            if group is None or not self.peers:
                return
            if group["autoSync"] != "enabled" and not force:
                for unit in [self, *self.peers]:
                    unit.sync_pending = True
                return
            pools, nodes, gen = copy.deepcopy(self._pools), copy.deepcopy(self._nodes), self._generation
            self.sync_pending = False
        for peer in self.peers:
            with peer._lock:
                peer._pools, peer._nodes = copy.deepcopy(pools), copy.deepcopy(nodes)
                peer._generation = max(peer._generation, gen)
                peer.sync_pending = False


class HAPair:
    """Two emulator units in one sync-failover device group, `a` active and `b` standby to begin with."""

    def __init__(self, a: BigIPEmulator, b: BigIPEmulator, *, group: str = "llm-failover-dg", auto_sync: bool = True,
                 hosts: Sequence[str] = ("127.0.0.1", "127.0.0.2")):
        if a.hostname == b.hostname:
            b.hostname = "bigip2.example.com" if a.hostname != "bigip2.example.com" else "bigip3.example.com"
        self.a, self.b = a, b
        self.hosts = tuple(hosts)
        a.peers, b.peers = [b], [a]
        a.management_ip, b.management_ip = self.hosts[0], self.hosts[1]
        for unit in (a, b):
            unit.add_device_group(group, type="sync-failover", auto_sync=auto_sync,
                                  devices=[f"/Common/{a.hostname}", f"/Common/{b.hostname}"])
        a.set_failover_state("active")
        b.set_failover_state("standby")
        self._cert_dir: str | None = None

    @property
    def units(self) -> tuple[BigIPEmulator, BigIPEmulator]:
        return self.a, self.b

    @property
    def active(self) -> BigIPEmulator | None:
        return next((u for u in self.units if u.failover_state == "active"), None)

    @property
    def standby(self) -> BigIPEmulator | None:
        return next((u for u in self.units if u.failover_state == "standby"), None)

    def set_active_active(self, floating: bool = True) -> None:
        """Run both units active, as a sync-failover group may: `floating` gives each unit its own traffic
        group (traffic-group-1 active on a, traffic-group-2 on b); without, there is no floating traffic
        group at all (traffic groups set to none). Both report ACTIVE; neither is split brain."""
        groups = (TRAFFIC_GROUP_1, "/Common/traffic-group-2") if floating else ()
        for i, unit in enumerate(self.units):
            unit.traffic_groups = {g: "active" if j == i else "standby" for j, g in enumerate(groups)}
            unit.set_failover_state("active")

    def split_brain(self) -> None:
        """Both units claim traffic-group-1 (the peers lost each other): two ACTIVE units, split brain."""
        for unit in self.units:
            unit.traffic_groups = None
            unit.set_failover_state("active")

    def swap(self) -> BigIPEmulator:
        """Fail over: the active unit goes standby and the other becomes active. Returns the new active."""
        for unit in self.units:
            unit.traffic_groups = None
        new = self.b if self.a.failover_state == "active" else self.a
        old = self.a if new is self.b else self.b
        old.set_failover_state("standby")
        new.set_failover_state("active")
        return new

    def add_pool(self, full_path: str, members: Sequence[str | dict[str, Any]] = (), **kw: Any) -> None:
        for unit in self.units:
            unit.add_pool(full_path, members, **kw)

    def writes(self) -> list[tuple[str, Write]]:
        """(unit hostname, write) for every write on either unit, in time order."""
        out = [(u.hostname, w) for u in self.units for w in list(u.writes)]
        return sorted(out, key=lambda hw: hw[1].time)

    def writes_off_active(self) -> list[tuple[str, Write]]:
        return [(h, w) for h, w in self.writes() if w.failover_state != "active"]

    def live_tokens(self) -> int:
        return sum(len(u.live_tokens()) for u in self.units)

    # -- serving --------------------------------------------------------------------------------
    @property
    def cert_path(self) -> str | None:
        return self.a.cert_path

    def start(self, port: int = 0) -> tuple[str, int]:
        """Serve both units on one port at their two loopback addresses; returns (CA bundle, port)."""
        if self._cert_dir is None:
            self._cert_dir = tempfile.mkdtemp(prefix="f5lr-ha-")
            pair = tls.make_self_signed(self._cert_dir, dns_names=("localhost", self.a.hostname, self.b.hostname),
                                        ip_addresses=(*self.hosts, "::1"))
            self.a._certs = self.b._certs = pair
        last: OSError | None = None
        for _ in range(20):  # port 0: the first unit picks one, the second must get the same on its address
            self.a.start(self.hosts[0], port)
            try:
                self.b.start(self.hosts[1], self.a.port or 0)
                return self.a._certs.cert if self.a._certs else "", self.a.port or 0
            except OSError as exc:
                last = exc
                self.a.stop()
                if port:
                    break
        raise OSError(f"HA pair: no common free port on {self.hosts}: {last}")

    def stop(self) -> None:
        for unit in self.units:
            unit.stop()
        if self._cert_dir and os.path.isdir(self._cert_dir):
            shutil.rmtree(self._cert_dir, ignore_errors=True)
        self._cert_dir = None
        self.a._certs = self.b._certs = None

    def __enter__(self) -> HAPair:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
