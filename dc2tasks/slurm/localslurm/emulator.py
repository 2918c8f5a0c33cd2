"""The local Slurm emulator: answers the exact commands `dc2tasks.slurm.commands` builds.

Why emulate the commands rather than offer a second client: the client, the command builders and
the output parsers are then the same code for a laptop and for NERSC, and the local backend tests
them. It is strict: an option or a form it does not implement is an error, not ignored.

Emulated: job ids, array elements (own raw ids for %j, SLURM_ARRAY_TASK_ID, `%` throttle),
--time (TIMEOUT), --output/--error/--chdir, afterok/afterany/afternotok dependencies, scancel
(CANCELLED by <uid>), COMPLETED/FAILED with exit codes, the submitting user (recorded as the uid
that ran sbatch; reported by name, and `--user` filters on it, as Slurm does). Not emulated: memory
limits, nodes, accounts/qos/partitions/licenses/images (accepted and ignored: one machine).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from dc2tasks.slurm import validate as v
from dc2tasks.slurm.commands import LISTING_FORMAT, SACCT_FIELDS, SQUEUE_FORMAT
from dc2tasks.slurm.job import ArraySpec
from dc2tasks.slurm.localslurm.store import FINAL, Element, Meta, Store
from dc2tasks.slurm.owner import account_name

IGNORED_OPTIONS = {"account", "qos", "partition", "constraint", "nodes", "ntasks", "mem", "image",
                   "licenses", "exclude"}
LOCAL_DEPS = ("afterok", "afterany", "afternotok")
_SBATCH_LINE = re.compile(r"#SBATCH\s+--([a-z-]+)(?:=(\S*))?\s*")


class EmulatorError(Exception):
    """Reported like a Slurm command error: exit 1 and the message on stderr."""


def parse_directives(script: str) -> dict[str, str]:
    """`#SBATCH --key=value` lines up to the first line that is not a comment (as sbatch does)."""
    opts: dict[str, str] = {}
    for line in script.splitlines()[1:]:
        s = line.strip()
        if not s:
            continue
        if not s.startswith("#"):
            break
        if s.startswith("#SBATCH"):
            m = _SBATCH_LINE.fullmatch(s)
            if not m:
                raise EmulatorError(f"sbatch: cannot parse directive {s!r}")
            opts[m[1]] = m[2] or ""
    return opts


class Emulator:
    def __init__(self, root: Path, cwd: Path | None = None) -> None:
        self.store = Store(root)
        self.cwd = cwd

    def run(self, argv: list[str], stdin: bytes) -> tuple[int, str, str]:
        handlers = {"sbatch": self.sbatch, "sacct": self.sacct, "squeue": self.squeue,
                    "scontrol": self.scontrol, "scancel": self.scancel}
        try:
            return 0, handlers[argv[0]](argv[1:], stdin), ""
        except EmulatorError as e:
            return 1, "", f"{argv[0]}: error: {e}\n"

    # -- sbatch -----------------------------------------------------------------------------------

    def sbatch(self, args: list[str], stdin: bytes) -> str:
        test_only = args == ["--test-only"]
        if args != ["--parsable"] and not test_only:
            raise EmulatorError(f"unsupported arguments {args}")
        script = stdin.decode()
        if not script.startswith("#!"):
            raise EmulatorError("This does not look like a batch script (no #! line)")
        o = parse_directives(script)
        known = IGNORED_OPTIONS | {"job-name", "time", "cpus-per-task", "array", "output", "error",
                                   "chdir", "dependency", "comment"}
        unknown = set(o) - known
        if unknown:
            raise EmulatorError(f"unrecognized option(s) {sorted(unknown)}")
        try:
            name = v.check("job-name", o.get("job-name", "sbatch"), v.NAME_RE, "job name")
            array = ArraySpec.parse(o["array"]) if "array" in o else None
            limit = v.parse_time_limit("time", o["time"]) if "time" in o else None
        except ValueError as e:
            raise EmulatorError(str(e)) from e
        deps = [d for d in o.get("dependency", "").split(",") if d]
        for d in deps:
            if d.split(":")[0] not in LOCAL_DEPS:
                raise EmulatorError(f"dependency {d!r}: the local backend supports {LOCAL_DEPS} only")
        indices = list(array.indices) if array else None
        if test_only:  # what sbatch --test-only says, without a job
            tasks = len(indices or [0])
            return f"sbatch: Job {name} would be accepted by the local backend ({tasks} task(s))\n"
        first = self.store.allocate_ids(len(indices) if indices else 1)
        workdir = o.get("chdir") or str(self.cwd or Path.cwd())
        meta = Meta(
            job_id=first, name=name, comment=o.get("comment", ""), indices=indices,
            throttle=array.throttle if array else None,
            time_limit_s=int(limit.total_seconds()) if limit else None,
            output=o.get("output") or ("slurm-%A_%a.out" if array else "slurm-%j.out"),
            error=o.get("error"), workdir=workdir, dependencies=deps,
            cpus_per_task=int(o.get("cpus-per-task", "1")), submit_time=time.time(), uid=os.getuid(),
            raw_ids={str(i): first + k for k, i in enumerate(indices)} if indices else {},
        )
        d = self.store.job_dir(first)
        d.mkdir(parents=True)
        (d / "script").write_text(script)
        self.store.write_meta(meta)
        self._spawn_supervisor(d)
        return f"{first}\n"

    def _spawn_supervisor(self, job_dir: Path) -> None:
        """Start the detached supervisor and wait until it holds its lock, so a status query right
        after sbatch never mistakes a supervisor that is still starting for a dead one."""
        log = open(job_dir / "supervisor.log", "ab")
        with log:
            subprocess.Popen(
                [sys.executable, "-m", "dc2tasks.slurm.localslurm.runner", str(job_dir)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                close_fds=True,
            )
        deadline = time.monotonic() + 30
        while not (job_dir / "supervisor.started").exists():
            if time.monotonic() > deadline:
                raise EmulatorError(f"local supervisor did not start; see {job_dir}/supervisor.log")
            time.sleep(0.01)

    # -- queries ----------------------------------------------------------------------------------

    def _elements(self, metas: list[Meta]) -> list[tuple[Meta, int | None, Element]]:
        return [(m, i, self.store.observed(m, i)) for m in metas for i in m.elements()]

    def _metas(self, ids: list[str] | None = None, name: str | None = None,
               user: str | None = None) -> list[Meta]:
        bases = {i.split("_")[0] for i in ids} if ids is not None else None
        out = []
        for jid in self.store.job_ids():
            if bases is not None and str(jid) not in bases:
                continue
            meta = self.store.meta(jid)
            if meta and (name is None or meta.name == name) and (user is None or _user(meta) == user):
                out.append(meta)
        return out

    @staticmethod
    def _state_text(el: Element) -> str:
        return f"CANCELLED by {el.cancelled_by}" if el.state == "CANCELLED" else el.state

    @staticmethod
    def _elapsed(el: Element) -> str:
        if el.start is None:
            return "00:00:00"
        secs = int((el.end or time.time()) - el.start)
        return f"{secs // 3600:02d}:{secs % 3600 // 60:02d}:{secs % 60:02d}"

    def sacct(self, args: list[str], stdin: bytes) -> str:
        opts = dict(a.split("=", 1) if "=" in a else (a, "") for a in args)
        if set(opts) - {"--noheader", "--parsable2", "--format", "--jobs", "--name", "--starttime",
                        "--user"} or opts.get("--format") != ",".join(SACCT_FIELDS):
            raise EmulatorError(f"unsupported arguments {args}")
        ids = opts["--jobs"].split(",") if "--jobs" in opts else None
        rows = []
        for meta, idx, el in self._elements(self._metas(ids, opts.get("--name"), opts.get("--user"))):
            eid = meta.element_id(idx)
            if ids is not None and eid not in ids and str(meta.job_id) not in ids:
                continue
            rss = f"{el.max_rss_kb}K" if el.max_rss_kb is not None else ""
            rows.append("|".join([eid, meta.name, self._state_text(el), f"{el.exit_code}:{el.signal}",
                                  self._elapsed(el), rss, "localhost" if el.start else "None assigned",
                                  _user(meta), meta.comment]))
        return "".join(r + "\n" for r in rows)

    def squeue(self, args: list[str], stdin: bytes) -> str:
        opts = dict(a.split("=", 1) if "=" in a else (a, "") for a in args)
        fmt = opts.get("--format")
        if set(opts) - {"--noheader", "--array", "--states", "--name", "--format", "--user"} or \
                fmt not in (SQUEUE_FORMAT, LISTING_FORMAT):
            raise EmulatorError(f"unsupported arguments {args}")
        metas = self._metas(name=opts.get("--name"), user=opts.get("--user"))
        # without --states, squeue shows only the jobs that have not ended, as Slurm does
        rows = [(m, i, el) for m, i, el in self._elements(metas)
                if "--states" in opts or el.state not in FINAL]
        return "".join(
            f"{m.element_id(i)}|{m.name}|{el.state}|"
            + (time.strftime("%Y-%m-%dT%H:%M:%S|", time.localtime(m.submit_time)) if fmt == LISTING_FORMAT
               else "")
            + f"{_user(m)}|{m.comment or '(null)'}\n"
            for m, i, el in rows
        )

    def scontrol(self, args: list[str], stdin: bytes) -> str:
        if args != ["--oneliner", "show", "job"]:
            raise EmulatorError(f"unsupported arguments {args}")
        lines = []
        for m, i, el in self._elements(self._metas()):
            arr = f" ArrayJobId={m.job_id} ArrayTaskId={i}" if i is not None else ""
            lines.append(
                f"JobId={m.raw_id(i)}{arr} JobName={m.name} JobState={el.state} "
                f"Reason={el.reason or 'None'} ExitCode={el.exit_code}:{el.signal} "
                f"RunTime={self._elapsed(el)} NodeList={'localhost' if el.start else '(null)'} "
                f"UserId={_user(m)}({m.uid}) Comment={m.comment or '(null)'}"
            )
        return "".join(line + "\n" for line in lines)

    def scancel(self, args: list[str], stdin: bytes) -> str:
        uid = os.getuid()
        for jid in args:
            if not v.JOB_ID_RE.fullmatch(jid):
                raise EmulatorError(f"Invalid job id {jid}")
            base, _, idx = jid.partition("_")
            meta = self.store.meta(base)
            if meta is None:
                raise EmulatorError(f"Kill job error on job id {jid}: Invalid job id specified")
            index = int(idx) if idx else None
            self.store.request_cancel(meta.job_id, index, uid)
            if not self.store.supervisor_alive(meta.job_id):  # nobody left to act on the request
                for i in meta.elements() if index is None else [index]:
                    el = self.store.observed(meta, i)  # NODE_FAIL: the supervisor died first
                    if el.pgid:  # its element may still run as an orphan: end it, keep the record
                        _kill_group(el.pgid)
                        el.pgid = None
                    self.store.write_element(meta.job_id, i, el)
        return ""


def _user(meta: Meta) -> str:
    return account_name(meta.uid)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
