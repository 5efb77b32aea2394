"""iControl REST paths, and BIG-IP's pool documents parsed into model objects.

Paths: `/mgmt/tm/ltm/pool/~Partition~name` and `.../members/~Partition~name` (a fullPath with a
subPath gives `~Partition~sub~name`); `%` goes out as `%25`.

A pool reply (`expandSubcollections=true`) is checked field by field before it becomes a
`PoolState`; anything of the wrong shape raises `Malformed`, which the client turns into
PermanentBigIPError("malformed ..."). A malformed pool reply is *permanent*, not retryable:
retrying the same GET returns the same document, and the reconciler must write nothing to that
pool this tick either way.

What may be written to a member is checked here too (`check_fields`), before anything is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from controller.ltm.replies import clip as _clip
from controller.model import Member, PoolRef, PoolState, split_member_name

RATIO_MIN, RATIO_MAX = 1, 65535
WRITABLE_FIELDS = frozenset({"ratio", "connectionLimit", "description"})
#: What may be written to a pool itself: only queueTimeLimit (the opt-in goodput mode), never `members`
POOL_WRITABLE_FIELDS = frozenset({"queueTimeLimit"})
QUEUE_TIME_LIMIT_MAX = 2**32 - 1  # milliseconds: BIG-IP's queueTimeLimit is an unsigned 32-bit integer
_ANY_ADDRESS = frozenset({"any6", "any", "::", "0.0.0.0"})  # an FQDN template member's address


def pool_path(ref: PoolRef) -> str:
    return f"/mgmt/tm/ltm/pool/{quote_segment(ref.uri_name)}"


def member_path(ref: PoolRef, member: Member) -> str:
    """`.../members/~Partition~name`; a fullPath with a subPath gives `~Partition~sub~name`. `%` goes out as `%25`."""
    full = member.full_path if member.full_path.endswith("/" + member.name) else f"/{member.partition}/{member.name}"
    return f"{pool_path(ref)}/members/{quote_segment(full.replace('/', '~'))}"


def quote_segment(segment: str) -> str:
    """One path segment, percent-encoded; `:` and `~` (partition separators) kept."""
    return quote(segment, safe=":~")


def dig(obj: Any, *keys: str) -> Any:
    """`obj[k1][k2]...`, or None where a level is missing or not an object."""
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


class Malformed(Exception):
    """A reply of the wrong shape; its message says where."""


def parse_pool(ref: PoolRef, reply: Any) -> PoolState:
    """A pool GET with expandSubcollections=true, or Malformed."""
    if not isinstance(reply, dict):
        raise Malformed(f"expected an object, got {type(reply).__name__}")
    mode = reply.get("loadBalancingMode")
    if not isinstance(mode, str) or not mode:
        raise Malformed("loadBalancingMode missing")
    full = reply.get("fullPath")
    if full is not None and full != ref.full_path:
        raise Malformed(f"fullPath {_clip(str(full))!r} is not {ref.full_path!r}")
    members_ref = reply.get("membersReference", {})
    if not isinstance(members_ref, dict):
        raise Malformed("membersReference is not an object")
    items = members_ref.get("items", [])
    if not isinstance(items, list):
        raise Malformed("membersReference.items is not a list")
    members = tuple(_parse_member(ref, i, item) for i, item in enumerate(items))
    names = [m.key for m in members]
    if len(set(names)) != len(names):
        raise Malformed("duplicate member names")
    queue = reply.get("queueOnConnectionLimit", "disabled")
    min_active = reply.get("minActiveMembers", 0)
    if isinstance(min_active, bool) or not isinstance(min_active, int) or min_active < 0:
        raise Malformed(f"minActiveMembers {min_active!r} is not an integer >= 0")
    depth, wait = _count(reply, "queueDepthLimit"), _count(reply, "queueTimeLimit")
    metadata = reply.get("metadata", [])
    if not isinstance(metadata, list) or not all(isinstance(m, dict) and "name" in m for m in metadata):
        raise Malformed("metadata is not a list of {name, value}")
    description = reply.get("description", "")
    return PoolState(
        ref=ref,
        load_balancing_mode=mode,
        members=members,
        queue_on_connection_limit=queue == "enabled",
        queue_depth_limit=depth,
        queue_time_limit_ms=wait,
        metadata=tuple((str(m["name"]), str(m.get("value", ""))) for m in metadata),
        description=description if isinstance(description, str) else "",
        min_active_members=min_active,
    )


def _count(reply: Mapping[str, Any], key: str) -> int:
    """A non-negative whole number BIG-IP sends for `key` (absent: 0, its default)."""
    value = reply.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Malformed(f"{key} is not a whole number >= 0: {_clip(str(value))!r}")
    return value


def _parse_member(ref: PoolRef, index: int, item: Any) -> Member:
    if not isinstance(item, dict):
        raise Malformed(f"member #{index} is not an object")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise Malformed(f"member #{index} has no name")
    where = f"member {_clip(name)!r}"

    def text(key: str, default: str | None = None) -> str:
        value = item.get(key, default)
        if not isinstance(value, str):
            raise Malformed(f"{where}: {key} missing or not a string")
        return value

    def integer(key: str, low: int, high: int) -> int:
        value = item.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise Malformed(f"{where}: {key} {value!r} is not an integer in {low}..{high}")
        return value

    try:
        _, port = split_member_name(name)
    except ValueError:
        raise Malformed(f"{where}: no port in the name") from None
    partition = text("partition", ref.partition)
    address, state = text("address"), text("state", "up")
    fqdn = item.get("fqdn")
    ephemeral = str(item.get("ephemeral", "false")).lower() == "true"
    autopopulate = isinstance(fqdn, dict) and fqdn.get("autopopulate") == "enabled"
    group = item.get("priorityGroup", 0)
    if isinstance(group, bool) or not isinstance(group, int) or not 0 <= group <= 65535:
        raise Malformed(f"{where}: priorityGroup {group!r} is not an integer in 0..65535")
    return Member(
        name=name,
        partition=partition,
        address=address,
        port=port,
        ratio=integer("ratio", RATIO_MIN, RATIO_MAX),
        connection_limit=integer("connectionLimit", 0, 2**32 - 1),
        session=text("session", "monitor-enabled"),
        state=state,
        description=text("description", ""),
        full_path=text("fullPath", f"/{partition}/{name}"),
        ephemeral=ephemeral,
        fqdn_template=not ephemeral and (autopopulate or state.startswith("fqdn-") or address in _ANY_ADDRESS),
        priority_group=group,
    )


def check_fields(fields: Mapping[str, Any]) -> str:
    """Why `fields` may not be PATCHed to a member, or "" when they may."""
    if not isinstance(fields, Mapping):
        return "fields must be a mapping"
    unknown = sorted(set(fields) - WRITABLE_FIELDS)
    if unknown:
        return f"unknown field(s) {', '.join(map(str, unknown))}; allowed: {', '.join(sorted(WRITABLE_FIELDS))}"
    if "ratio" in fields:
        r = fields["ratio"]
        if isinstance(r, bool) or not isinstance(r, int) or not RATIO_MIN <= r <= RATIO_MAX:
            return f"ratio {r!r} is not an integer in {RATIO_MIN}..{RATIO_MAX}"
    if "connectionLimit" in fields:
        c = fields["connectionLimit"]
        if isinstance(c, bool) or not isinstance(c, int) or c < 0:
            return f"connectionLimit {c!r} is not an integer >= 0"
    if "description" in fields and not isinstance(fields["description"], str):
        return "description is not a string"
    return ""


def check_pool_fields(fields: Mapping[str, Any]) -> str:
    """Why `fields` may not be PATCHed to a pool, or "" when they may (only queueTimeLimit, ms)."""
    if not isinstance(fields, Mapping):
        return "fields must be a mapping"
    unknown = sorted(set(fields) - POOL_WRITABLE_FIELDS)
    if unknown:
        return f"unknown pool field(s) {', '.join(map(str, unknown))}; allowed: {', '.join(sorted(POOL_WRITABLE_FIELDS))}"
    wait = fields.get("queueTimeLimit", 0)
    if isinstance(wait, bool) or not isinstance(wait, int) or not 0 <= wait <= QUEUE_TIME_LIMIT_MAX:
        return f"queueTimeLimit {wait!r} is not an integer in 0..{QUEUE_TIME_LIMIT_MAX} (milliseconds)"
    return ""
