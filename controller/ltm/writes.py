"""Writing members: PATCH batches and transactions, per `f5.write_mode`.

"patch": one PATCH per member, `f5.write_concurrency` at a time; one member's failure (including
404: removed since the read) is recorded and does not stop the others. The first write that hits
its deadline stops the rest: they are *deferred* to the next tick, not failed, so a slow BIG-IP
does not stretch the tick by a timeout per member.

"transaction": all changes in one atomic commit (POST a transaction, PATCH each member with the
coordination header, PATCH the transaction to VALIDATING); any failure fails every plan, and the
transaction is deleted (BIG-IP also drops uncommitted ones after 120 s). Commits are never
retried: the next tick re-reads BIG-IP and decides again.

Values are checked before anything is sent (`controller.ltm.paths.check_fields`); a refused change
fails its member and sends nothing. The HTTP itself (auth, retries, deadlines, error translation)
is the client's, reached through the `call` and `patch` it hands to `Writer`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from controller.errors import BigIPError, BigIPTimeout, PermanentBigIPError, RetryableBigIPError
from controller.ltm.paths import check_fields, member_path
from controller.ltm.replies import clip as _clip
from controller.model import Member, MemberPlan, PoolRef
from controller.redact import scrub as _scrub

log = logging.getLogger("controller.ltm.client")  # one logger name for everything the BIG-IP client logs

COORDINATION_HEADER = "X-F5-REST-Coordination-Id"
TRANSACTION_PATH = "/mgmt/tm/transaction"
TRANSACTION_POLLS = 3  # GETs while a committed transaction is still being applied


@dataclass
class ApplyResult:
    """What `apply` did: members written, members not written (with why), HTTP calls spent."""

    applied: list[str] = field(default_factory=list)
    failed: list[tuple[str, BigIPError]] = field(default_factory=list)
    calls: int = 0
    deferred: list[str] = field(default_factory=list)  # not attempted: an earlier write timed out or the budget is spent

class Call(Protocol):
    """`BigIPClient._call`: one authenticated call, errors translated, retryable ones retried."""

    def __call__(self, method: str, path: str, json: Any = None, params: Mapping[str, str] | None = None,
                 headers: Mapping[str, str] | None = None, *, retry: bool = True) -> Any: ...


class Patch(Protocol):
    """`BigIPClient.patch_member`."""

    def __call__(self, ref: PoolRef, member: Member, fields: Mapping[str, Any], *,
                 headers: Mapping[str, str] | None = None) -> None: ...


def refuse_bad(ref: PoolRef, plans: Sequence[MemberPlan], result: ApplyResult) -> list[MemberPlan]:
    """The plans with changes worth sending; those whose values may not be written go to `result.failed`."""
    todo: list[MemberPlan] = []
    for plan in plans:
        changes = plan.changes
        if not changes:
            continue
        problem = check_fields(changes)
        if problem:
            result.failed.append((plan.member.key, PermanentBigIPError(
                f"refused locally, nothing sent: {problem}", method="PATCH", path=member_path(ref, plan.member))))
        else:
            todo.append(plan)
    return todo


@dataclass(frozen=True, kw_only=True)
class Writer:
    """Writes one pool's plans through the client's `call` and `patch`."""

    call: Call
    patch: Patch
    sleep: Callable[[float], None]
    secrets: Callable[[], Iterable[str]]
    poll_delay: float  # seconds between GETs of a committed transaction still being applied

    def patches(self, ref: PoolRef, plans: list[MemberPlan], result: ApplyResult, *, concurrency: int) -> None:
        """One PATCH per member, `concurrency` at a time, each outcome recorded in `result`."""
        stop = threading.Event()  # set by the first write that times out: the rest wait for the next tick
        skipped = BigIPTimeout("not attempted: an earlier write in this tick timed out")

        def write(plan: MemberPlan) -> BigIPError | None:
            if stop.is_set():
                return skipped
            try:
                self.patch(ref, plan.member, plan.changes)
            except BigIPTimeout as e:
                stop.set()
                return e
            except BigIPError as e:
                return e
            return None

        workers = max(1, min(concurrency, len(plans)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bigip-write") as pool:
            outcomes = list(pool.map(write, plans))
        for plan, error in zip(plans, outcomes, strict=True):
            if error is None:
                result.applied.append(plan.member.key)
            elif error is skipped:
                result.deferred.append(plan.member.key)
            else:
                log.debug("bigip_write_failed", extra={"pool": str(ref), "member": plan.member.key, "error": str(error)})
                result.failed.append((plan.member.key, error))

    def transaction(self, ref: PoolRef, plans: list[MemberPlan], result: ApplyResult) -> None:
        """All plans in one committed transaction: every key applied, or every key failed."""
        keys = [p.member.key for p in plans]
        try:
            reply = self.call("POST", TRANSACTION_PATH, json={})
            trans_id = reply.get("transId") if isinstance(reply, dict) else None
            if isinstance(trans_id, bool) or not isinstance(trans_id, (int, str)) or not str(trans_id):
                raise PermanentBigIPError("malformed transaction reply: no transId", status=200,
                                          method="POST", path=TRANSACTION_PATH)
        except BigIPError as e:
            result.failed.extend((k, e) for k in keys)
            return
        tpath = f"{TRANSACTION_PATH}/{trans_id}"
        try:
            for plan in plans:
                self.patch(ref, plan.member, plan.changes, headers={COORDINATION_HEADER: str(trans_id)})
            # The commit must NOT carry the coordination header: BIG-IP answers 400 if it does.
            reply = self.call("PATCH", tpath, json={"state": "VALIDATING"}, retry=False)
            self._await(tpath, reply)
        except BigIPError as e:
            log.debug("bigip_transaction_failed", extra={"pool": str(ref), "error": str(e), "applied": 0})
            result.failed.extend((k, e) for k in keys)
            try:  # abandon it; BIG-IP also drops uncommitted transactions after 120 s
                self.call("DELETE", tpath, retry=False)
            except BigIPError:
                pass
            return
        result.applied.extend(keys)

    def _await(self, tpath: str, reply: Any) -> None:
        """Raise unless the committed transaction ends COMPLETED (a synchronous commit usually has)."""
        for poll in range(TRANSACTION_POLLS + 1):
            state = reply.get("state") if isinstance(reply, dict) else None
            if state in (None, "COMPLETED"):
                return
            if state == "FAILED":
                reason = _scrub(str(reply.get("failureReason") or reply.get("message") or "no reason given"),
                                self.secrets())
                raise PermanentBigIPError(f"transaction failed: {_clip(reason)}", method="PATCH", path=tpath)
            if poll == TRANSACTION_POLLS:
                break
            self.sleep(self.poll_delay)
            reply = self.call("GET", tpath)
        raise RetryableBigIPError(f"transaction still {state} after commit", method="PATCH", path=tpath)
