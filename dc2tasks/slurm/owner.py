"""Whose jobs a client may act on: the submitting account, and the deployment's job token.

Why both: job names are deterministic (a retry finds its earlier tries' jobs by name), so anyone on
the cluster can submit a job under a name we are about to use. The account check keeps other users'
jobs out (Slurm itself says whose a job is). The token keeps out jobs of our own account that this
deployment did not submit (a person using the shared account by hand, a second deployment with the
same DAGs). A job comment is readable by every cluster user, so it carries not the token but an
HMAC of the job's name and try: a copied comment is valid only for the exact (name, try) it was
copied from, and nobody without the token can make one for a name we have not used yet.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import pwd
import re
from dataclasses import dataclass
from typing import Protocol, TypeVar

from dc2tasks.slurm import validate as v

COMMENT_RE = re.compile(r"dc2:try=(\d{1,6})(?::([0-9a-f]{32}))?")
"""`dc2:try=N` (written before job tokens existed, never adopted) or `dc2:try=N:<tag>`."""
TAG_HEX = 32
MIN_TOKEN_CHARS = 16
log = logging.getLogger(__name__)


def account_name(uid: int) -> str:
    """The user name of `uid` as Slurm reports it (squeue %u), or the number if it has none."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


class Record(Protocol):
    job_id: str
    name: str
    user: str
    comment: str


R = TypeVar("R", bound=Record)


def job_tag(token: str, name: str, try_number: int) -> str:
    """The comment's proof that this deployment submitted try `try_number` of job `name`."""
    mac = hmac.new(token.encode(), f"{name}\n{try_number}".encode(), hashlib.sha256)
    return mac.hexdigest()[:TAG_HEX]


def job_comment(name: str, try_number: int, token: str) -> str:
    return f"dc2:try={try_number}:{job_tag(token, name, try_number)}"


def comment_try(comment: str) -> int | None:
    """The try a comment claims (verified or not): for messages, never for decisions."""
    m = COMMENT_RE.fullmatch(comment or "")
    return int(m[1]) if m else None


@dataclass(frozen=True)
class Owner:
    """The account jobs must belong to, and the token their comments must be signed with.

    `token=None` checks the account only (a plain client, the CLI); the Airflow operator always
    gives a token, and only jobs whose comment it verifies are ever reattached or adopted."""

    user: str
    token: str | None = None

    def __post_init__(self) -> None:
        v.check("user", self.user, v.USER_RE, "user name")
        if self.token is not None and (not isinstance(self.token, str) or len(self.token) < MIN_TOKEN_CHARS):
            raise ValueError(f"job token: expected a secret string of at least {MIN_TOKEN_CHARS} characters")

    def __repr__(self) -> str:  # never print the token
        return f"Owner(user={self.user!r}, token={'set' if self.token else None})"

    def comment(self, name: str, try_number: int) -> str:
        if self.token is None:
            raise ValueError("job token: none configured, cannot sign a job comment")
        return job_comment(name, try_number, self.token)

    def verified_try(self, name: str, comment: str) -> int | None:
        """The try of a job named `name` if its comment carries this deployment's tag for it."""
        m = COMMENT_RE.fullmatch(comment or "")
        if m is None or self.token is None or m[2] is None:
            return None
        expected = job_tag(self.token, name, int(m[1]))
        return int(m[1]) if hmac.compare_digest(expected, m[2]) else None

    def why_not_ours(self, r: Record) -> str | None:
        if r.user != self.user:
            return f"of user {r.user or '?'!r}, not {self.user!r}"
        if self.token is not None and self.verified_try(r.name, r.comment) is None:
            return f"its comment {r.comment!r} does not carry this deployment's job token"
        return None

    def keep(self, records: list[R], what: str) -> list[R]:
        """The records that are ours. Every job that is not is logged once (id, name, why)."""
        kept, told = [], set()
        for r in records:
            why = self.why_not_ours(r)
            if why is None:
                kept.append(r)
                continue
            base = r.job_id.split("_")[0]
            if base not in told:
                told.add(base)
                log.warning("%s: ignoring Slurm job %s (name %s): %s", what, base, r.name, why)
        return kept
