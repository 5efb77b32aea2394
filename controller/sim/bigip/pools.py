"""The pool/member/node state API that tests, the demo and benchmarks call directly (no REST)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from controller.sim.bigip import shapes
from controller.sim.bigip.core import EmulatorCore
from controller.sim.bigip.state import (
    FQDN_STATES,
    HEALTH_STATES,
    Member,
    Node,
    Pool,
    is_ip,
    parse_member_name,
    parse_pool_path,
)

_SESSIONS = ("monitor-enabled", "user-enabled", "user-disabled")


class PoolStore(EmulatorCore):
    """Create, change and read pools, members and nodes as an admin would in tmsh."""

    def add_pool(self, full_path: str, members: Sequence[str | dict[str, Any]] = (), *,
                 lb_mode: str = "ratio-least-connections-member", queue_on_connection_limit: bool = False,
                 queue_depth_limit: int = 0, queue_time_limit: int = 0, description: str = "",
                 monitor: str = "", metadata: list[dict[str, str]] | None = None, **props: Any) -> dict[str, Any]:
        """Create a pool. `members`: names like "10.0.0.1:8000" or dicts of `add_member` keywords.
        Extra REST properties (e.g. slowRampTime=0) may be passed as keywords."""
        partition, sub_path, name = parse_pool_path(full_path)
        p = {
            "allowNat": "yes", "allowSnat": "yes", "description": description, "ignorePersistedWeight": "disabled",
            "ipTosToClient": "pass-through", "ipTosToServer": "pass-through", "linkQosToClient": "pass-through",
            "linkQosToServer": "pass-through", "loadBalancingMode": lb_mode, "minActiveMembers": 0,
            "minUpMembers": 0, "minUpMembersAction": "failover", "minUpMembersChecking": "disabled",
            "monitor": monitor, "queueDepthLimit": queue_depth_limit,
            "queueOnConnectionLimit": "enabled" if queue_on_connection_limit else "disabled",
            "queueTimeLimit": queue_time_limit, "reselectTries": 0, "serviceDownAction": "none", "slowRampTime": 10,
        }
        p.update(props)
        with self._lock:
            pool = Pool(partition, sub_path, name, self._next_gen(), p, metadata=metadata)
            if pool.full_path in self._pools:
                raise ValueError(f"pool {pool.full_path} exists")
            self._pools[pool.full_path] = pool
            for m in members:
                if isinstance(m, str):
                    self.add_member(pool.full_path, m)
                else:
                    self.add_member(pool.full_path, **m)
            return shapes.pool_json(self, pool, expand=True)

    def remove_pool(self, full_path: str) -> None:
        with self._lock:
            del self._pools[self._pool_key(full_path)]

    def add_member(self, pool: str, name: str, address: str | None = None, ratio: int = 1,
                   connection_limit: int = 0, session: str = "monitor-enabled", state: str = "up",
                   description: str = "", partition: str | None = None, **props: Any) -> dict[str, Any]:
        """Add a member. `session`: monitor-enabled, user-enabled or user-disabled; `state`: up, down,
        unchecked, checking or user-down (fqdn-* for an FQDN template). Read-back follows BIG-IP: an enabled
        member without a monitor (state unchecked) reads back as user-enabled, with one as monitor-enabled."""
        node, port = parse_member_name(name)
        if port is None:
            raise ValueError(f"member name {name!r} has no port")
        if address is None:
            if not is_ip(node):
                raise ValueError(f"member {name!r}: give address= for a named node")
            address = node
        with self._lock:
            p = self._pools[self._pool_key(pool)]
            if name in p.members:
                raise ValueError(f"{p.full_path}: member {name} exists")
            m = Member(name=name, partition=partition or p.partition, address=address, ratio=ratio,
                       connection_limit=connection_limit, description=description, generation=self._next_gen())
            m.props.update(props)
            _apply_state(m, session, state)
            p.members[name] = m
            self._ensure_node(m.partition, node, address, m)
            return shapes.member_json(self, p, m)

    def add_fqdn_member(self, pool: str, fqdn: str, port: int, resolved: Sequence[str] = (), *,
                        state: str = "fqdn-up", partition: str | None = None) -> list[str]:
        """An FQDN template member (`fqdn:port`, address any6, state fqdn-*) and, for each address in
        `resolved`, the ephemeral member BIG-IP creates from DNS (`_auto_<addr>:<port>`, ephemeral "true").
        Returns the member names, template first."""
        if state not in FQDN_STATES:
            raise ValueError(f"bad FQDN state {state!r}; expected one of {FQDN_STATES}")
        fq = {"addressFamily": "ipv4", "autopopulate": "enabled", "downInterval": 5, "interval": "3600",
              "tmName": fqdn}
        names = [f"{fqdn}:{port}"]
        with self._lock:
            self.add_member(pool, names[0], address="any6", partition=partition, fqdn=dict(fq))
            template = self._pools[self._pool_key(pool)].members[names[0]]
            template.health = state
            for addr in resolved:
                sep = "." if ":" in addr else ":"
                name = f"_auto_{addr}{sep}{port}"
                self.add_member(pool, name, address=addr, partition=partition, ephemeral="true",
                                fqdn={"autopopulate": "enabled", "tmName": fqdn})
                names.append(name)
        return names

    def _ensure_node(self, partition: str, node: str, address: str, m: Member) -> None:
        key = f"/{partition}/{node}"
        if key not in self._nodes:
            n = Node(name=node, partition=partition, address=address, generation=self._next_gen(),
                     ephemeral=m.ephemeral)
            tm_name = m.props.get("fqdn", {}).get("tmName")
            if tm_name and m.address == "any6":
                n.fqdn = {"addressFamily": "ipv4", "autopopulate": "enabled", "downInterval": 5, "interval": "3600",
                          "tmName": tm_name}
            self._nodes[key] = n

    def remove_member(self, pool: str, name: str) -> None:
        with self._lock:
            del self._pools[self._pool_key(pool)].members[name]

    def member(self, pool: str, name: str) -> dict[str, Any]:
        """The member's REST JSON (a copy)."""
        with self._lock:
            p = self._pools[self._pool_key(pool)]
            return shapes.member_json(self, p, p.members[name])

    def members(self, pool: str) -> list[dict[str, Any]]:
        with self._lock:
            p = self._pools[self._pool_key(pool)]
            return [shapes.member_json(self, p, m) for m in p.members.values()]

    def pool(self, full_path: str, expand: bool = True) -> dict[str, Any]:
        """The pool's REST JSON (a copy), members under membersReference.items when `expand`."""
        with self._lock:
            return shapes.pool_json(self, self._pools[self._pool_key(full_path)], expand)

    def pool_paths(self) -> list[str]:
        with self._lock:
            return list(self._pools)

    def ratios(self, pool: str) -> dict[str, int]:
        with self._lock:
            return {n: m.ratio for n, m in self._pools[self._pool_key(pool)].members.items()}

    def node(self, full_path: str) -> dict[str, Any]:
        """The node's REST JSON (a copy), e.g. node("/Common/10.0.0.1")."""
        with self._lock:
            return shapes.node_json(self, self._nodes[self._pool_key(full_path)])

    def set_member(self, pool: str, name: str, **fields: Any) -> dict[str, Any]:
        """Change a member directly (no validation, no write logged), e.g. ratio=3, connection_limit=2."""
        with self._lock:
            p = self._pools[self._pool_key(pool)]
            m = p.members[name]
            for k, v in fields.items():
                setattr(m, k, v)
            m.generation = self._next_gen()
            return shapes.member_json(self, p, m)

    def set_member_state(self, pool: str, name: str, session: str | None = None,
                         state: str | None = None) -> dict[str, Any]:
        """Operator/monitor action without REST. `session`: user-enabled, user-disabled or monitor-enabled;
        `state`: user-up, user-down, or a monitor result up/down/unchecked/checking (fqdn-* for a template)."""
        with self._lock:
            p = self._pools[self._pool_key(pool)]
            m = p.members[name]
            if session is not None:
                if session not in _SESSIONS:
                    raise ValueError(f"bad session {session!r}")
                m.enabled = session != "user-disabled"
            if state is not None:
                if state == "user-up":
                    m.forced_down = False
                elif state == "user-down":
                    m.forced_down = True
                elif state in HEALTH_STATES + FQDN_STATES:
                    m.health = state
                else:
                    raise ValueError(f"bad state {state!r}")
            m.generation = self._next_gen()
            return shapes.member_json(self, p, m)

    def set_pool(self, full_path: str, **props: Any) -> dict[str, Any]:
        """Change pool REST properties directly, e.g. loadBalancingMode="round-robin"."""
        with self._lock:
            p = self._pools[self._pool_key(full_path)]
            p.props.update(props)
            p.generation = self._next_gen()
            return shapes.pool_json(self, p, expand=True)


def _apply_state(m: Member, session: str, state: str) -> None:
    if session not in _SESSIONS:
        raise ValueError(f"bad session {session!r}")
    if state not in HEALTH_STATES + FQDN_STATES + ("user-down",):
        raise ValueError(f"bad state {state!r}")
    m.enabled = session != "user-disabled"
    m.forced_down = state == "user-down"
    if state in HEALTH_STATES + FQDN_STATES:
        m.health = state
    elif session == "user-enabled":
        m.health = "unchecked"
