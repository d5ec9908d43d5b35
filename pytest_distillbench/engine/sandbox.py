"""Isolated execution of untrusted, model-generated Python programs, and verdicts on them that
the program cannot forge.

Every program runs in a process tree of its own, so that whatever it does the evaluating
process neither crashes nor hangs. The trees are forked from one long-lived "zygote", so a
program costs a few forks rather than an interpreter start::

    evaluator ──Popen, once──► zygote (this file run as a script; never runs untrusted code)
        │ per program: pipes and a status socket, passed over a Unix socket (SCM_RIGHTS)
        ▼
    zygote ──fork──► supervisor: reads the request from its stdin; once init exits (or on
                       │  timeout) kills init's process group, reaps it, reports the status
                       │  unshare(pid, net, mount, ipc, uts namespaces): as root directly,
                       │  otherwise inside a new user namespace where the kernel allows one
                       └─fork─► init (pid 1 of the new pid namespace): own session; private
                                  │  /proc, the host's mounts read-only, fresh tmpfs over /tmp
                                  │  and other world-writable directories and the work directory
                                  └─fork─► program worker (run_python): confined, runs the code
                                  or, for check_completion, init forks the candidate and then
                                  becomes the judge, the two joined by two pipes:
                                  judge (init): holds the test and the token; runs no candidate
                                  │  code; not dumpable; its own uid as root
                                  └─fork─► candidate: confined, runs prompt + completion and
                                             answers the judge's calls with plain data

"Confined" is: rlimits, an unprivileged per-run uid as root (a nested user namespace without
root, so it holds no capability over the namespaces above), no_new_privs, and a seccomp filter
(libseccomp, where installed) refusing sockets of every family, ptrace, process_vm_*, pidfd_*,
signals to any process but itself, setsid/setpgid, namespaces, mounts, io_uring and bpf.

The zygote only receives descriptors and forks: it never reads a request, so no program, test
or token ever enters its memory, and every program starts from the same state, that of a
freshly started ``python -I`` with this module loaded (nothing a previous program imported,
patched or set is there).

The verdict (``check_completion``). What is guaranteed, at every isolation level on Linux: a
completion can make ``check`` pass only by returning, for the test's arguments, values equal to
the expected ones. The test, its expected values and the per-run success token never exist in
the candidate's memory: they travel on a pipe only the judge reads, and only after it has forked
the candidate (no other sandbox process reads it). The candidate can neither introspect the
judge (another process: frames, ``gc``, ``__main__`` patching and builtins reach only the
candidate's own interpreter) nor read its memory (the judge is not dumpable and, as root, another uid;
ptrace and process_vm_readv are refused by seccomp). What crosses to the judge is JSON decoded
into fresh built-in values (None, bool, int, float, complex, str, bytes, list, tuple, dict, set,
frozenset), so no object with a custom ``__eq__`` reaches the comparison. The judge writes the
token to a channel the candidate does not hold, only after ``check`` returned; "passed" needs
that token and the judge's exit code 0. Leaving early (``sys.exit``, ``os._exit``, a crash,
killing the judge) fails the item.
What is not guaranteed: the candidate sees the test's arguments (it must, to compute), so a
completion may still special-case inputs it can guess, e.g. from the prompt's examples; it may
learn across runs where it can write something that outlives a run (the ``seccomp`` level
below); the test's arguments and the candidate's results must be plain values (a test passing a
function or an object cannot be scored, and fails); and a test that never calls the candidate
passes whatever it is. The prompt and the test are trusted (they come from the data set): the
judge runs them. Not a defence against kernel exploits or side channels (timing).

Isolation levels (``Isolation.level``; ``LEVELS``, weakest first):

- ``namespaces``: own pid, network and mount namespaces and the seccomp filter. Root gets them
  directly (plus a fresh unused uid per run, so RLIMIT_NPROC counts only its processes); an
  ordinary user through an unprivileged user namespace (most Linux distributions allow one; the
  uid then is the user's own, mapped to 0 inside, and RLIMIT_NPROC is not set). Contained: no
  network and no host unix socket (seccomp; a network namespace alone does not cover path-based
  unix sockets); the host is read-only and /tmp, /var/tmp, /dev/shm, /run/lock and the work
  directory are private tmpfs; other processes, the evaluator included, do not exist in the pid
  namespace, and every process left behind dies with init; the environment is the sandbox's own.
- ``seccomp``: an ordinary user without user namespaces (or with ones it may not use: AppArmor's
  restriction lets them be created but refuses mounts; the first failed run is retried without
  and they are not tried again). Contained: the filter (no network, no
  host unix sockets, no ptrace or process_vm_*, no signal to any other process, no leaving the
  process group, so the group kill catches every straggler); the evaluator, zygote, supervisor,
  init and judge are not dumpable, so the program cannot read their memory, environment or
  descriptors through /proc; an empty environment; a private work directory; no inherited
  descriptors. Not contained: the program keeps the user's file rights (it can write the
  user's home, caches and /tmp, and read what the user can read, such as other same-user
  processes' /proc entries when those are dumpable), and sees the host's process list.
- ``rlimits``: no libseccomp (or not Linux): only the rlimits, the wall-clock deadline, the
  process-group kill, the output cap, the environment scrub and the verdict above remain; the
  program can use the network and signal the user's other processes.

Without root the evaluator marks itself not dumpable (``PR_SET_DUMPABLE``) when it starts the
zygote: debuggers and ``py-spy`` cannot attach to it afterwards, and it dumps no core.

Other limits, at every level:

- **Time**: the evaluator enforces a wall-clock deadline, on which the supervisor kills init's
  whole process group; RLIMIT_CPU bounds CPU time per process.
- **Memory / files / descriptors**: RLIMIT_AS, RLIMIT_FSIZE, RLIMIT_NOFILE; core dumps off.
- **Output floods**: stdout and stderr are pipes drained incrementally; at most
  ``max_output_bytes`` of each is kept and the rest is discarded (``truncated`` is set).
- **Fork loops**: RLIMIT_NPROC as root (per-run uid); with a pid namespace everything dies with
  init; without one, the supervisor kills init's process group (which seccomp keeps everything
  in) and, as root, every process of the per-run uids (``kill(-1)`` as that uid).
- **Files**: the working directory is a fresh size-limited tmpfs (without a mount namespace, a
  fresh directory, owned by the per-run uid as root) removed afterwards. As root, directories
  only root may enter (a Python under /root) are replaced by a tmpfs exposing just the
  interpreter's own paths, which also hides the rest of them.

``SandboxResult.isolation`` records which protections were in force for each run, and
``isolation()`` probes them once. As root without CAP_SYS_ADMIN (no mount namespace), an
interpreter installed under a directory only root may enter cannot load modules the zygote had
not already imported. All programs share the zygote's string-hash seed (the order of sets of
str), as forked processes do.
"""

from __future__ import annotations

import atexit
import builtins
import ctypes
import errno
import fcntl
import functools
import gc
import json
import os
import resource
import secrets
import select
import selectors
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import types
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["passed", "failed", "timeout", "error", "killed"]

_SETUP_FAILED = 125  # exit code of the supervisor when the sandbox itself could not be built
_SCRATCH_MB = 64  # size of each private tmpfs (work directory, /tmp, ...)
_REPORT_CAP = 65536  # bytes kept from the report channel
_DRAIN_GRACE_S = 1.0  # how long to wait for pipes to close after the program exited
_UID_BASE = 10_000_000  # per-run uids are drawn from [base, base + span): unused by real users
_UID_SPAN = 10_000_000
_WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
# the supervisor's descriptors 0, 1, ...; it closes those before "status" once init is forked
_SUPERVISOR_FDS = ("request", "stdout", "stderr", "report", "test", "status")
_FD_PARKING = 64  # received descriptors are parked at or above this while being renumbered
_STOP_TIMEOUT_S = 30.0  # how long the evaluator waits for the wait status after a stop
_ZYGOTE_SEND_TIMEOUT_S = 30.0  # how long handing a request to the zygote may block
_FRAME_CAP = 32 * 1024 * 1024  # largest message between the judge and the candidate

# Linux constants (sched.h, mount.h, prctl.h, statvfs.h)
_CLONE_NEWNS = 0x00020000
_CLONE_NEWCGROUP = 0x02000000
_CLONE_NEWUTS = 0x04000000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWPID = 0x20000000
_CLONE_NEWNET = 0x40000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REMOUNT = 1, 2, 4, 8, 32
_MS_NOATIME, _MS_NODIRATIME, _MS_BIND, _MS_REC, _MS_PRIVATE = 1024, 2048, 4096, 16384, 1 << 18
_MS_RELATIME = 1 << 21
_ST_TO_MS = ((2, _MS_NOSUID), (4, _MS_NODEV), (8, _MS_NOEXEC), (1024, _MS_NOATIME),
             (2048, _MS_NODIRATIME), (4096, _MS_RELATIME))  # statvfs f_flag bit -> mount flag
_PR_SET_PDEATHSIG, _PR_SET_DUMPABLE, _PR_SET_NO_NEW_PRIVS = 1, 4, 38

LEVELS = ("rlimits", "seccomp", "namespaces")
_USE_USER_NAMESPACES = True  # tests switch it off to exercise the level below  # isolation levels, weakest first (see above)


@dataclass(frozen=True)
class Isolation:
    """Which protections were in force for one run (see the module docstring)."""

    network: bool = False  # own network namespace: no route anywhere
    pid_namespace: bool = False  # own pid namespace: other processes invisible, stragglers die
    private_tmp: bool = False  # tmpfs work directory and /tmp: nothing written reaches the host
    uid: int | None = None  # the unprivileged uid the program ran as (None: the caller's own)
    user_namespace: bool = False  # the namespaces come from an unprivileged user namespace
    seccomp: bool = False  # the program's system calls were filtered (no sockets, ptrace, ...)
    read_only_host: bool = False  # every host mount is read-only to the program

    @property
    def level(self) -> str:
        """``namespaces`` (pid, network and mount namespaces and the seccomp filter),
        ``seccomp`` (the filter without namespaces) or ``rlimits`` (neither)."""
        if self.seccomp and self.network and self.pid_namespace and self.private_tmp:
            return "namespaces"
        return "seccomp" if self.seccomp else "rlimits"

    def describe(self) -> str:
        parts = [name for name, on in (
            ("user namespace" if self.user_namespace else "namespaces as root",
             self.pid_namespace), ("no network", self.network), ("private /tmp", self.private_tmp),
            ("read-only host", self.read_only_host), ("seccomp", self.seccomp),
            (f"uid {self.uid}", self.uid is not None)) if on]
        return f"{self.level} ({', '.join(parts) or 'rlimits, process group and empty environment only'})"


@dataclass(frozen=True)
class SandboxResult:
    status: Status
    returncode: int | None  # negative: killed by that signal
    stdout: str
    stderr: str
    seconds: float
    truncated: bool  # stdout or stderr exceeded max_output_bytes and was cut
    isolation: Isolation = field(default_factory=Isolation)
    reason: str = ""  # why the status is what it is, in words

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass(frozen=True)
class _Limits:
    timeout_s: float
    memory_mb: int
    cpu_s: float | None
    max_output_bytes: int
    max_processes: int
    max_file_bytes: int

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.memory_mb <= 0 or self.max_output_bytes < 0:
            raise ValueError(f"sandbox limits must be positive: {self}")
        if self.max_processes < 1 or self.max_file_bytes < 0:
            raise ValueError(f"sandbox limits must be positive: {self}")

    def rlimits(self) -> dict[str, int]:
        cpu = self.cpu_s if self.cpu_s is not None else self.timeout_s
        return {
            "RLIMIT_AS": self.memory_mb * 1024 * 1024,
            "RLIMIT_CPU": max(1, int(cpu + 0.999)),
            "RLIMIT_FSIZE": self.max_file_bytes,
            "RLIMIT_NOFILE": 256,
            "RLIMIT_CORE": 0,
            "RLIMIT_NPROC": self.max_processes,
        }


def run_python(source: str, *, timeout_s: float = 10.0, memory_mb: int = 1024,
               cpu_s: float | None = None, max_output_bytes: int = 65536,
               max_processes: int = 64, max_file_bytes: int = 16 * 1024 * 1024) -> SandboxResult:
    """Run ``source`` as a Python program (``__name__ == "__main__"``) in the sandbox.

    "passed" means it exited with code 0, "failed" any other exit code, "killed" a signal
    (e.g. SIGXCPU from the CPU limit), "timeout" the wall-clock deadline, "error" that the
    sandbox could not be set up. ``cpu_s`` defaults to ``timeout_s``.
    """
    limits = _Limits(timeout_s, memory_mb, cpu_s, max_output_bytes, max_processes, max_file_bytes)
    return _execute({"mode": "program", "source": source}, b"", limits, nonce=None)


def check_completion(prompt: str, completion: str, test: str, entry_point: str, *,
                     timeout_s: float = 10.0, memory_mb: int = 1024,
                     max_output_bytes: int = 65536) -> SandboxResult:
    """Score a HumanEval-style completion: ``prompt + completion`` must define ``entry_point``
    and ``check(entry_point)`` from ``test`` must return.

    The candidate and the test run in two processes (see the module docstring): the candidate
    never holds the test, its expected values or the success token, and only plain data
    crosses from it to the test. Arguments the test passes and values the candidate returns
    must be plain built-in values (None, bool, int, float, complex, str, bytes and lists,
    tuples, dicts, sets, frozensets of them, exact types); anything else fails the item.
    Exceptions the candidate raises reach the test as the built-in exception of that name
    (``RuntimeError`` for others). "passed" needs the judge's per-run token and exit code 0.
    ``prompt`` and ``test`` are trusted (the judge runs them); only ``completion`` is not.
    """
    limits = _Limits(timeout_s, memory_mb, None, max_output_bytes, 64, 16 * 1024 * 1024)
    nonce = secrets.token_hex(16)
    request = {"mode": "check", "prompt": prompt, "completion": completion,
               "entry_point": entry_point}
    secret = json.dumps({"test": test, "nonce": nonce}).encode()
    return _execute(request, secret, limits, nonce=nonce)


_level_lock = threading.Lock()
_level: Isolation | None = None


def isolation() -> Isolation:
    """The isolation this process's sandbox gives, probed once with a trivial program."""
    global _level
    with _level_lock:
        if _level is None:
            result = run_python("pass\n", timeout_s=30.0)
            if result.status != "passed":
                raise RuntimeError(f"the sandbox does not work here: {result.reason}\n{result.stderr}")
            _level = result.isolation
        return _level


def meets(level: str, required: str) -> bool:
    """Whether isolation ``level`` is at least ``required`` (both from ``LEVELS``)."""
    return LEVELS.index(level) >= LEVELS.index(required)


# --------------------------------------------------------------------------------------------
# Evaluator side


def _clean_env(workdir: str) -> dict[str, str]:
    """The only variables the program sees: nothing is inherited from the evaluator."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": workdir,
        "TMPDIR": workdir,
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


class _Zygote:
    """The evaluator's handle on the long-lived process every program tree is forked from.

    Requests travel as descriptors only (see ``_zygote_loop``). The zygote exits when the
    control socket closes, i.e. when the evaluator exits or dies."""

    def __init__(self) -> None:
        self.owner = os.getpid()
        if os.geteuid() != 0:
            # Without root, programs run as the evaluator's own user: where no pid namespace
            # hides it, only this keeps them out of its memory, environment and descriptors.
            try:
                _prctl(_PR_SET_DUMPABLE, 0)
            except (AttributeError, OSError):  # not Linux: the rlimits level
                pass
        control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", os.path.abspath(__file__), "--zygote", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                start_new_session=True)  # terminal signals (Ctrl-C) are for the evaluator only
        except BaseException:
            control.close()
            raise
        finally:
            theirs.close()
        control.settimeout(_ZYGOTE_SEND_TIMEOUT_S)
        self.control = control

    def usable(self) -> bool:
        return self.owner == os.getpid() and self.process.poll() is None

    def spawn(self, fds: list[int]) -> None:
        socket.send_fds(self.control, [b"run"], fds)

    def close(self) -> None:
        self.control.close()
        if self.owner != os.getpid():
            return  # a forked copy of the evaluator: the zygote is its parent's
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_zygote_lock = threading.Lock()
_zygote: _Zygote | None = None


def _spawn(fds: list[int]) -> None:
    """Hand one program's descriptors to the zygote, starting (or restarting) it if needed."""
    global _zygote
    with _zygote_lock:
        for attempt in range(2):
            if _zygote is None or not _zygote.usable():
                if _zygote is not None:
                    _zygote.close()
                _zygote = _Zygote()
                atexit.unregister(_stop_zygote)  # registered once, however often restarted
                atexit.register(_stop_zygote)
            try:
                _zygote.spawn(fds)
                return
            except OSError:
                if attempt:
                    raise
                _zygote.close()  # died between the check and the send: start another
                _zygote = None


def _stop_zygote() -> None:
    global _zygote
    with _zygote_lock:
        if _zygote is not None:
            _zygote.close()
            _zygote = None


def _zygote_pid() -> int | None:
    """The running zygote's pid (for tests and diagnostics)."""
    with _zygote_lock:
        return _zygote.process.pid if _zygote is not None and _zygote.usable() else None


class _Capture:
    """Keeps the first ``cap`` bytes of a stream and counts what it threw away."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.data = bytearray()
        self.truncated = False

    def feed(self, chunk: bytes) -> None:
        room = self.cap - len(self.data)
        if room > 0:
            self.data += chunk[:room]
        if len(chunk) > room:
            self.truncated = True


@dataclass
class _Channels:
    """The evaluator's ends of one run's pipes and status socket."""

    request: int  # write end of the supervisor's stdin
    stdout: int
    stderr: int
    report: int
    test: int  # write end of the pipe only the judge reads
    status: socket.socket

    def close(self) -> None:
        for fd in (self.request, self.stdout, self.stderr, self.report, self.test):
            if fd >= 0:
                os.close(fd)
        self.status.close()


def _start() -> _Channels:
    """Create the run's channels and have the zygote fork a supervisor holding the other ends
    (in the order of ``_SUPERVISOR_FDS``)."""
    ours: list[int] = []
    theirs: list[int] = []
    status = None
    try:
        r, w = os.pipe()  # the request: we write, the supervisor reads
        ours.append(w)
        theirs.append(r)
        for _ in ("stdout", "stderr", "report"):  # the sandbox writes, we read
            r, w = os.pipe()
            ours.append(r)
            theirs.append(w)
        r, w = os.pipe()  # the test and token: we write, only the judge reads
        ours.append(w)
        theirs.append(r)
        status, supervisor_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        theirs.append(supervisor_end.detach())
        _spawn(theirs)
        return _Channels(*ours, status=status)
    except BaseException:
        for fd in ours:
            os.close(fd)
        if status is not None:
            status.close()
        raise
    finally:
        for fd in theirs:
            os.close(fd)


def _pump(channels: _Channels, outgoing: dict[str, bytes], captures: dict[int, _Capture],
          deadline: float) -> tuple[int | None, bool]:
    """Feed the request and the judge's secret (``outgoing``: channel name -> bytes) and
    drain stdout, stderr and the report pipe until they close and the supervisor has reported
    the program's exit, the exit was reported a grace period ago, or the deadline passes.
    Returns (the program's wait status or None, timed out)."""
    sel = selectors.DefaultSelector()
    views: dict[int, tuple[str, memoryview]] = {}
    for name, payload in outgoing.items():
        fd = getattr(channels, name)
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_WRITE)
        views[fd] = (name, memoryview(payload))
    for fd in captures:
        sel.register(fd, selectors.EVENT_READ)
    status_fd = channels.status.fileno()
    sel.register(status_fd, selectors.EVENT_READ)
    wait_status: int | None = None
    reported_at: float | None = None
    try:
        while set(sel.get_map()) - set(views):
            now = time.monotonic()
            if now >= deadline:
                return wait_status, wait_status is None
            if reported_at is not None and now - reported_at > _DRAIN_GRACE_S:
                break  # a straggler outside the killed group holds a pipe open
            for key, _ in sel.select(timeout=min(0.1, deadline - now)):
                fd = key.fd
                if fd in views:
                    name, view = views[fd]
                    try:
                        view = view[os.write(fd, view[:65536]):]
                    except (BrokenPipeError, BlockingIOError):
                        view = view[:0]
                    views[fd] = (name, view)
                    if not view:
                        sel.unregister(fd)
                        del views[fd]
                        os.close(fd)
                        setattr(channels, name, -1)
                elif fd == status_fd:
                    sel.unregister(fd)
                    wait_status = _parse_status(_receive(channels.status))
                    reported_at = time.monotonic()
                else:
                    chunk = os.read(fd, 65536)
                    if chunk:
                        captures[fd].feed(chunk)
                    else:
                        sel.unregister(fd)
        return wait_status, False
    finally:
        sel.close()


def _receive(sock: socket.socket) -> bytes:
    try:
        return sock.recv(256)
    except OSError:
        return b""


def _parse_status(message: bytes) -> int | None:
    """The supervisor's one message: the program's wait status (nothing if it vanished)."""
    try:
        return int(json.loads(message)["status"])
    except (ValueError, KeyError, TypeError):
        return None


def _stop(channels: _Channels) -> int | None:
    """On timeout: have the supervisor kill init's process group and reap init; returns the
    wait status it reports, None if it is gone."""
    try:
        channels.status.settimeout(_STOP_TIMEOUT_S)
        channels.status.send(b"stop")
    except OSError:
        return None
    return _parse_status(_receive(channels.status))


def _parse_report(raw: bytes) -> tuple[dict[str, Any] | None, list[str]]:
    """First line: the worker's isolation facts (or a setup error), written before any
    untrusted code ran; later lines may come from the program and are only searched for the
    token."""
    lines = raw.decode("utf-8", "replace").split("\n")
    try:
        head = json.loads(lines[0])
    except ValueError:
        head = None
    return (head if isinstance(head, dict) else None), lines[1:]


def _execute(request: dict[str, Any], secret: bytes, limits: _Limits, *,
             nonce: str | None) -> SandboxResult:
    """Run one request; ``secret`` (the test and token) travels on the pipe only the judge
    reads, never through the supervisor, init or the candidate. Where a user namespace can be
    created but not used (e.g. AppArmor's restriction of unprivileged user namespaces refuses
    mounts in it), the sandbox cannot be set up in one: such a run is retried without, and if
    that works, user namespaces are not tried again in this process."""
    global _USE_USER_NAMESPACES
    use = _USE_USER_NAMESPACES and os.geteuid() != 0
    result = _execute_once(request, secret, limits, nonce=nonce, user_namespaces=use)
    if use and result.status == "error":
        retry = _execute_once(request, secret, limits, nonce=nonce, user_namespaces=False)
        if retry.status != "error":
            _USE_USER_NAMESPACES = False
            return retry
    return result


def _execute_once(request: dict[str, Any], secret: bytes, limits: _Limits, *, nonce: str | None,
                  user_namespaces: bool) -> SandboxResult:
    start = time.monotonic()
    deadline = start + limits.timeout_s
    root = os.geteuid() == 0
    uid = _UID_BASE + secrets.randbelow(_UID_SPAN) if root else None
    judge_uid = uid + _UID_SPAN if uid is not None else None  # never the candidate's
    workdir = tempfile.mkdtemp(prefix="distillbench-sandbox-")
    config = {**request, "uid": uid, "judge_uid": judge_uid, "workdir": workdir,
              "user_namespaces": user_namespaces,
              "report_fd": _SUPERVISOR_FDS.index("report"), "test_fd": _SUPERVISOR_FDS.index("test"),
              "rlimits": limits.rlimits()}
    channels = None
    try:
        if uid is not None:
            os.chown(workdir, uid, uid)
        payload = json.dumps(config).encode()
        channels = _start()
        out, err, report = (_Capture(limits.max_output_bytes), _Capture(limits.max_output_bytes),
                            _Capture(_REPORT_CAP))
        captures = {channels.stdout: out, channels.stderr: err, channels.report: report}
        wait_status, timed_out = _pump(channels, {"request": payload, "test": secret}, captures,
                                       deadline)
        if timed_out:
            wait_status = _stop(channels)
        facts, later = _parse_report(bytes(report.data))
        isolation = Isolation(**{k: facts[k] for k in _FACTS if k in facts}) \
            if facts and "error" not in facts else Isolation()
        returncode = None if wait_status is None else os.waitstatus_to_exitcode(wait_status)
        status, reason = _judge(timed_out, returncode, facts, later, nonce, limits)
        return SandboxResult(
            status=status, returncode=returncode,
            stdout=out.data.decode("utf-8", "replace"), stderr=err.data.decode("utf-8", "replace"),
            seconds=time.monotonic() - start, truncated=out.truncated or err.truncated,
            isolation=isolation, reason=reason)
    finally:
        if channels is not None:
            channels.close()  # should we leave early, this EOF is the supervisor's stop
        shutil.rmtree(workdir, ignore_errors=True)


_FACTS = ("network", "pid_namespace", "private_tmp", "uid", "user_namespace", "seccomp",
          "read_only_host")


def _judge(timed_out: bool, returncode: int | None, facts: dict[str, Any] | None, later: list[str],
           nonce: str | None, limits: _Limits) -> tuple[Status, str]:
    if timed_out:
        return "timeout", f"still running after {limits.timeout_s:g} s of wall-clock time"
    if facts is not None and "error" in facts:
        return "error", f"the sandbox could not be set up: {facts['error']}"
    if returncode is None:
        return "error", "the sandbox's supervisor ended without reporting the program's exit"
    if facts is None:
        return "error", f"the sandbox exited (code {returncode}) before the program started"
    if returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else "?"
        return "killed", f"killed by signal {-returncode} ({name})"
    if returncode != 0:
        return "failed", f"exited with code {returncode}"
    if nonce is not None and nonce not in later:
        return "failed", "the judge exited with code 0 but gave no success token"
    return "passed", "check() returned" if nonce is not None else "exited with code 0"


# --------------------------------------------------------------------------------------------
# Sandbox side: this file run as a script, the zygote, and the processes forked from it


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _prctl(option: int, value: int) -> None:
    _check(_libc().prctl(option, ctypes.c_ulong(value), 0, 0, 0), f"prctl({option})")


def _mount(source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    def enc(s: str | None) -> bytes | None:
        return None if s is None else s.encode()

    ret = _libc().mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data))
    _check(ret, f"mount {target}")


def _try_unshare(flags: int) -> bool:
    return _libc().unshare(ctypes.c_int(flags)) == 0


def _report(fd: int, facts: dict[str, Any]) -> None:
    os.write(fd, (json.dumps(facts) + "\n").encode())


def _fail_setup(fd: int, exc: BaseException) -> None:
    """Tell the evaluator the sandbox itself broke; never returns."""
    try:
        _report(fd, {"error": f"{type(exc).__name__}: {exc}"})
    finally:
        os._exit(_SETUP_FAILED)


def _blocked_ancestors(paths: set[str]) -> dict[str, set[str]]:
    """Directories others may not enter, each with the children the interpreter needs in it."""
    blocked: dict[str, set[str]] = {}
    for path in paths:
        parts = path.strip("/").split("/")
        for depth in range(len(parts)):
            ancestor = "/" + "/".join(parts[:depth])
            if not os.stat(ancestor).st_mode & stat.S_IXOTH:
                blocked.setdefault(ancestor, set()).add(parts[depth])
                break
    return blocked


@functools.cache
def _interpreter_paths() -> frozenset[str]:
    """Where the interpreter's own files are (fixed for the life of the process)."""
    return frozenset(os.path.realpath(p) for p in (
        sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix,
        os.path.dirname(sys.executable), *sys.path) if p and os.path.exists(p))


def _expose_interpreter() -> None:
    """Let the unprivileged uid reach Python's own files when they sit under a directory only
    root may enter (/root/.pyenv): replace that directory by a tmpfs holding bind mounts of
    just the needed children, which also hides everything else in it."""
    needed = set(_interpreter_paths())
    for _ in range(8):  # one level of blocked directories per round
        blocked = _blocked_ancestors(needed)
        if not blocked:
            return
        for directory in sorted(blocked, key=len):
            handles = {c: os.open(os.path.join(directory, c), os.O_PATH) for c in blocked[directory]}
            _mount("tmpfs", directory, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=1m,mode=0755")
            for child, handle in handles.items():
                target = os.path.join(directory, child)
                if stat.S_ISDIR(os.fstat(handle).st_mode):
                    os.mkdir(target)
                else:
                    open(target, "x").close()
                _mount(f"/proc/self/fd/{handle}", target, None, _MS_BIND | _MS_REC)
                os.close(handle)


def _unescape_mount_point(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def _read_only_host() -> bool:
    """Inside the new mount namespace, make every mount the program could write through
    read-only (the tmpfs mounts made afterwards stay writable). False if one refused."""
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        points = [_unescape_mount_point(line.split()[4]) for line in fh]
    done = True
    for point in dict.fromkeys(points):
        if point.startswith(("/proc", "/sys", "/dev")):
            continue  # kernel interfaces and device nodes: permissions, not the mount, guard them
        try:
            f_flag = os.statvfs(point).f_flag
            keep = functools.reduce(lambda acc, pair: acc | (pair[1] if f_flag & pair[0] else 0),
                                    _ST_TO_MS, 0)  # flags a user namespace may not drop
            _mount(None, point, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | keep)
        except OSError:
            done = False
    return done


def _private_mounts(config: dict[str, Any], pid_namespace: bool) -> bool:
    """Inside the new mount namespace: nothing propagates back to the host, the host is
    read-only, /tmp and friends and the work directory are fresh tmpfs. Returns whether the
    whole host could be made read-only."""
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    if pid_namespace:
        _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    if config["uid"] is not None:
        _expose_interpreter()
    read_only = _read_only_host()
    size = f"size={_SCRATCH_MB}m"
    for directory in _WORLD_WRITABLE:
        if os.path.isdir(directory) and os.stat(directory).st_mode & stat.S_IWOTH:
            _mount("tmpfs", directory, "tmpfs", _MS_NOSUID | _MS_NODEV, f"{size},mode=1777")
    workdir, uid = config["workdir"], config["uid"]
    os.makedirs(workdir, exist_ok=True)  # may now lie in the fresh /tmp
    owner = f",uid={uid},gid={uid}" if uid is not None else ""
    _mount("tmpfs", workdir, "tmpfs", _MS_NOSUID | _MS_NODEV, f"{size},mode=0700{owner}")
    return read_only


def _drop_privileges(config: dict[str, Any], uid: int | None) -> None:
    for name, value in config["rlimits"].items():
        if name == "RLIMIT_NPROC" and uid is None:
            continue  # for an ordinary user it would count all of the user's processes
        limit = getattr(resource, name)
        hard = value + 1 if name == "RLIMIT_CPU" else value  # SIGXCPU first, SIGKILL a second later
        resource.setrlimit(limit, (value, hard))
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # a uid change cleared it


def _write_file(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _enter_user_namespace(flags: int) -> bool:
    """Unshare a new user namespace (with ``flags``' other namespaces, owned by it), the
    caller's uid and gid mapped to 0 in it: how an ordinary user gets namespaces."""
    uid, gid = os.getuid(), os.getgid()
    if not _try_unshare(_CLONE_NEWUSER | flags):
        return False
    _prctl(_PR_SET_DUMPABLE, 1)  # a process that is not dumpable may not write its own maps
    try:
        _write_file("/proc/self/setgroups", "deny")
        _write_file("/proc/self/uid_map", f"0 {uid} 1")
        _write_file("/proc/self/gid_map", f"0 {gid} 1")
    finally:
        _prctl(_PR_SET_DUMPABLE, 0)
    return True


def _drop_namespace_capabilities() -> None:
    """In an unprivileged user namespace the sandbox's processes hold every capability over
    the namespaces it made (they could unmount the private /tmp). A nested user namespace
    takes them away: what the program then holds, it holds only over that empty namespace."""
    if not _enter_user_namespace(0):
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUSER) for the program failed")


def _confine(config: dict[str, Any], facts: dict[str, Any], uid: int | None) -> None:
    """The last trusted steps before untrusted code runs in this process."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.chdir(config["workdir"])
    _drop_privileges(config, uid)
    if facts["user_namespace"]:
        _drop_namespace_capabilities()
    facts["seccomp"] = _apply_seccomp()
    facts["uid"] = uid


def _close(*fds: int) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _worker(config: dict[str, Any], facts: dict[str, Any]) -> None:
    """The program's process (``run_python``): confine, report the facts, run the code."""
    report_fd = config["report_fd"]
    try:
        _close(config["test_fd"])
        _confine(config, facts, config["uid"])
        _report(report_fd, facts)
    except BaseException as exc:
        _fail_setup(report_fd, exc)
    os.close(report_fd)
    source = config["source"]
    config.clear()
    _run_program(source)


def _run_program(source: str) -> None:
    """Run ``source`` as ``__main__``, then leave as the interpreter would (see ``_leave``).
    Exits the interpreter treats specially (a SystemExit carrying a message or an odd code,
    KeyboardInterrupt) propagate and take its own path."""
    main = types.ModuleType("__main__")
    sys.modules["__main__"] = main
    sys.argv = ["<sandbox>"]
    try:
        exec(compile(source, "<sandbox>", "exec"), main.__dict__)
        code = 0
    except SystemExit as exc:
        if not (exc.code is None or (isinstance(exc.code, int) and 0 <= exc.code <= 255)):
            raise
        code = exc.code or 0
    except Exception as exc:
        traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next if exc.__traceback__ else None)
        code = 1
    _leave(code, main)


def _leave(code: int, main: types.ModuleType) -> None:
    """Exit the way the interpreter does: non-daemon threads joined, atexit handlers run, the
    program's globals released (so their ``__del__`` runs), stdout and stderr flushed (120 if
    that fails); but without tearing the interpreter down, which would release every object
    inherited from the zygote, one copy-on-write fault per page, and cost more than the rest
    of a run. Other objects still alive are not finalised, which Python does not promise at
    exit either."""
    threading_module = sys.modules.get("threading")
    if threading_module is not None:
        threading_module._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    names = [n for n in main.__dict__ if n != "__builtins__"]
    for name in sorted(names, key=lambda n: not n.startswith("_")):  # as CPython: _names first
        main.__dict__[name] = None
    gc.collect()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except BaseException:
            code = 120
    os._exit(code)


# --- plain data between the judge and the candidate ------------------------------------------
# Scalars are JSON's own (None, bool, int, float, str); everything else is a JSON array whose
# first element names the type. Encoding checks exact types; decoding builds fresh built-in
# objects only, so whatever the candidate's process sends, the judge compares plain values.

_SCALARS = (type(None), bool, int, float, str)
_TAGS = {list: "l", tuple: "t", set: "s", frozenset: "f", dict: "d", complex: "c", bytes: "b"}


def _encode(value: Any) -> Any:
    kind = type(value)
    if kind in _SCALARS:
        return value
    tag = _TAGS.get(kind)
    if tag is None:
        raise TypeError(f"a {kind.__name__} is not a plain value; only built-in values are accepted")
    if tag == "d":
        return ["d", *(_encode(item) for pair in value.items() for item in pair)]
    if tag == "c":
        return ["c", value.real, value.imag]
    if tag == "b":
        return ["b", value.hex()]
    return [tag, *(_encode(item) for item in value)]


def _decode(data: Any) -> Any:
    kind = type(data)
    if kind in _SCALARS:
        return data
    if kind is not list or not data or type(data[0]) is not str:
        raise TypeError("the candidate's process sent something that is not a plain value")
    tag, items = data[0], data[1:]
    if tag == "c" and len(items) == 2 and all(type(x) in (int, float) for x in items):
        return complex(items[0], items[1])
    if tag == "b" and len(items) == 1 and type(items[0]) is str:
        return bytes.fromhex(items[0])
    values = [_decode(item) for item in items]
    if tag == "l":
        return values
    if tag == "t":
        return tuple(values)
    if tag == "s":
        return set(values)
    if tag == "f":
        return frozenset(values)
    if tag == "d" and len(values) % 2 == 0:
        return dict(zip(values[::2], values[1::2], strict=True))
    raise TypeError(f"the candidate's process sent an unknown value tag {tag!r:.20}")


def _send_frame(fd: int, message: Any) -> None:
    data = json.dumps(message, separators=(",", ":")).encode()
    data = len(data).to_bytes(4, "big") + data
    while data:
        data = data[os.write(fd, data):]


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks, missing = [], size
    while missing:
        chunk = os.read(fd, min(missing, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


def _read_frame(fd: int) -> Any:
    """The next message, None at end of file; ValueError if it is oversized or not JSON."""
    head = _read_exact(fd, 4)
    if head is None:
        return None
    size = int.from_bytes(head, "big")
    if size > _FRAME_CAP:
        raise ValueError(f"a message of {size} bytes from the candidate's process is too large")
    body = _read_exact(fd, size)
    if body is None:
        return None
    return json.loads(body)


# --- the candidate: runs the completion, answers calls; never holds the test -----------------


def _candidate(config: dict[str, Any], facts: dict[str, Any]) -> None:
    """The completion's process. Holds neither the test, the token nor the report channel;
    the first message it sends (its facts) goes out before any untrusted code has run."""
    links = config["links"]
    calls, answers = links["calls_r"], links["answers_w"]
    try:
        _close(config["test_fd"], config["report_fd"], links["calls_w"], links["answers_r"])
        _confine(config, facts, config["uid"])
        _send_frame(answers, ["setup", {"seccomp": facts["seccomp"]}])
    except BaseException as exc:
        try:
            _send_frame(answers, ["setup-error", f"{type(exc).__name__}: {exc}"])
        finally:
            os._exit(_SETUP_FAILED)
    source = config["prompt"] + config["completion"]
    entry_point = config["entry_point"]
    config.clear()
    _serve(source, entry_point, calls, answers)


def _flush_output() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass


def _serve(source: str, entry_point: str, calls: int, answers: int) -> None:
    """Define the candidate (in a module of its own, not ``__main__``), then answer each call
    the judge sends with the plain value it returned or the exception it raised."""
    sys.set_int_max_str_digits(0)
    module = types.ModuleType("candidate")
    sys.modules["candidate"] = module
    try:
        exec(compile(source, "<candidate>", "exec"), module.__dict__)
        function = module.__dict__[entry_point]
    except BaseException as exc:  # SystemExit at import too: the judge fails the item
        traceback.print_exc()
        _flush_output()
        _send_frame(answers, ["error", f"{type(exc).__name__}: {exc}"[:2000]])
        os._exit(1)
    _send_frame(answers, ["ready"])
    while True:
        request = _read_frame(calls)
        if request is None:
            _flush_output()
            os._exit(0)
        args, kwargs = _decode(request)
        try:
            reply = ["value", _encode(function(*args, **kwargs))]
        except BaseException as exc:  # SystemExit too: it is an answer the test will reject
            reply = ["raised", type(exc).__name__, str(exc)[:2000]]
        _flush_output()
        _send_frame(answers, reply)


# --- the judge: holds the test and the token; runs no candidate code --------------------------


class _Remote:
    """What the test calls as the candidate: each call crosses to the candidate's process as
    plain data and its answer comes back decoded into fresh built-in values."""

    def __init__(self, name: str, calls: int, answers: int) -> None:
        self.__name__ = self.__qualname__ = name
        self._calls, self._answers = calls, answers

    def __repr__(self) -> str:
        return f"<candidate {self.__name__}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            request = _encode([args, kwargs])
        except TypeError as exc:
            raise TypeError(f"the test passed a value that cannot cross to the candidate's "
                            f"process: {exc}") from None
        try:
            _send_frame(self._calls, request)
        except BrokenPipeError:
            raise RuntimeError("the candidate's process ended before the call") from None
        reply = _read_frame(self._answers)
        if reply is None:
            raise RuntimeError("the candidate's process ended during the call")
        if type(reply) is list and reply and reply[0] == "value" and len(reply) == 2:
            return _decode(reply[1])
        if type(reply) is list and len(reply) == 3 and reply[0] == "raised" \
                and type(reply[1]) is str and type(reply[2]) is str:
            kind = getattr(builtins, reply[1], None)
            if not (isinstance(kind, type) and issubclass(kind, Exception)):
                kind = RuntimeError
            raise kind(f"raised by the candidate: {reply[1]}: {reply[2]}")
        raise RuntimeError("the candidate's process sent a malformed answer")


def _judge_process(config: dict[str, Any], facts: dict[str, Any]) -> None:
    """The test's process (init, once the candidate is forked): its own uid as root, not
    dumpable (the candidate may neither ptrace it nor read its memory), reads the test and
    token from a pipe no other sandbox process reads, and writes the token to the report
    channel only after check() returned."""
    report_fd, links = config["report_fd"], config["links"]
    calls, answers = links["calls_w"], links["answers_r"]
    try:
        _close(links["calls_r"], links["answers_w"])
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.chdir(config["workdir"])
        _drop_privileges(config, config["judge_uid"])
        _prctl(_PR_SET_DUMPABLE, 0)  # after the uid change, which resets it
        secret = json.loads(_read_all(config["test_fd"]))
        os.close(config["test_fd"])
        setup = _read_frame(answers)  # sent before any candidate code ran: trustworthy
        if not (isinstance(setup, list) and setup[:1] == ["setup"]):
            raise RuntimeError(f"the candidate's process could not be set up: {setup!r:.300}")
        facts.update(seccomp=bool(setup[1]["seccomp"]), uid=config["uid"])
        _report(report_fd, facts)
    except BaseException as exc:
        _fail_setup(report_fd, exc)
    _run_judge(config["prompt"], config["entry_point"], secret, _Remote(config["entry_point"], calls, answers),
               answers, report_fd)


def _test_namespace(prompt: str) -> dict[str, Any]:
    """The prompt's own definitions (helpers such as ``poly``), never the candidate's."""
    for source in (prompt, prompt + "    pass\n"):  # a prompt that ends at a bare signature
        namespace: dict[str, Any] = {"__name__": "check_env"}
        try:
            exec(compile(source, "<prompt>", "exec"), namespace)
            return namespace
        except SyntaxError:
            continue
    return {"__name__": "check_env"}


def _run_judge(prompt: str, entry_point: str, secret: dict[str, str], candidate: _Remote,
               answers: int, report_fd: int) -> None:
    write, hard_exit = os.write, os._exit
    token = ("\n" + secret.pop("nonce") + "\n").encode()  # starts a fresh line
    sys.set_int_max_str_digits(0)
    try:
        ready = _read_frame(answers)
        if ready is None:
            raise RuntimeError("the candidate's process ended before it defined the function")
        if ready != ["ready"]:
            raise RuntimeError(f"the candidate's code failed: {ready!r:.500}")
        namespace = _test_namespace(prompt)
        namespace.pop("check", None)
        namespace[entry_point] = candidate
        exec(compile(secret.pop("test"), "<test>", "exec"), namespace)
        namespace["check"](candidate)
    except BaseException:  # SystemExit too: leaving before check() returned is a failure
        try:
            traceback.print_exc()
            sys.stderr.flush()
        finally:
            hard_exit(1)
    try:
        write(report_fd, token)
    except BaseException:
        hard_exit(1)
    hard_exit(0)


# --- seccomp, through libseccomp ----------------------------------------------------------------

_SCMP_ACT_ALLOW = 0x7FFF0000
_SCMP_CMP_NE, _SCMP_CMP_MASKED_EQ = 1, 7
# Refused with EPERM: sockets of every family (the network, and host unix sockets that no
# network namespace covers; socketpair stays), every way into another process (ptrace,
# process_vm_*, pidfd_*, kcmp, perf, bpf), leaving the process group or session, namespaces
# and mounts, io_uring (which would bypass the rest), keyrings and kernel administration.
_DENIED_SYSCALLS = (
    "socket", "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_open", "pidfd_getfd",
    "pidfd_send_signal", "kcmp", "perf_event_open", "bpf", "userfaultfd", "io_uring_setup",
    "io_uring_enter", "io_uring_register", "keyctl", "add_key", "request_key", "mount",
    "umount2", "pivot_root", "chroot", "setns", "unshare", "move_mount", "open_tree", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr", "open_by_handle_at", "name_to_handle_at",
    "setsid", "setpgid", "tkill", "kexec_load", "kexec_file_load", "init_module", "finit_module",
    "delete_module", "iopl", "ioperm", "swapon", "swapoff", "reboot", "acct", "quotactl",
    "fanotify_init")
# Signals only to the program's own process (its children inherit the filter, and the pid)
_OWN_PID_ONLY = ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo")
_NAMESPACE_FLAGS = (_CLONE_NEWNS, _CLONE_NEWCGROUP, _CLONE_NEWUTS, _CLONE_NEWIPC, _CLONE_NEWUSER,
                    _CLONE_NEWPID, _CLONE_NEWNET)


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


@functools.cache
def _libseccomp() -> ctypes.CDLL | None:
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError:
        return None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.restype = ctypes.c_int
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(_ArgCmp)]
    lib.seccomp_load.restype = ctypes.c_int
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    return lib


@functools.cache
def _syscall_numbers() -> dict[str, int]:
    """The filter's syscalls on this architecture (those it lacks are left out)."""
    lib = _libseccomp()
    if lib is None:
        return {}
    names = (*_DENIED_SYSCALLS, *_OWN_PID_ONLY, "clone", "clone3")
    numbers = {name: lib.seccomp_syscall_resolve_name(name.encode()) for name in names}
    return {name: nr for name, nr in numbers.items() if nr >= 0}


def _apply_seccomp() -> bool:
    """Load the filter into this (single-threaded) process; False where libseccomp is
    missing. Other architectures' system calls are killed (libseccomp's default)."""
    lib, numbers = _libseccomp(), _syscall_numbers()
    if lib is None:
        return False
    ctx = lib.seccomp_init(_SCMP_ACT_ALLOW)
    if not ctx:
        raise OSError("seccomp_init failed")
    eperm = 0x00050000 | errno.EPERM

    def rule(action: int, name: str, *conditions: _ArgCmp) -> None:
        if name not in numbers:
            return
        array = (_ArgCmp * len(conditions))(*conditions) if conditions else None
        ret = lib.seccomp_rule_add_array(ctx, action, numbers[name], len(conditions), array)
        if ret < 0:
            raise OSError(-ret, f"seccomp rule for {name}: {os.strerror(-ret)}")

    try:
        for name in _DENIED_SYSCALLS:
            rule(eperm, name)
        rule(0x00050000 | errno.ENOSYS, "clone3")  # its flags are out of a filter's reach: glibc falls back to clone
        for flag in _NAMESPACE_FLAGS:
            rule(eperm, "clone", _ArgCmp(0, _SCMP_CMP_MASKED_EQ, flag, flag))
        own = os.getpid()
        for name in _OWN_PID_ONLY:
            rule(eperm, name, _ArgCmp(0, _SCMP_CMP_NE, own, 0))
        ret = lib.seccomp_load(ctx)
        if ret < 0:
            raise OSError(-ret, f"seccomp_load: {os.strerror(-ret)}")
    finally:
        lib.seccomp_release(ctx)
    return True


def _init(config: dict[str, Any], facts: dict[str, Any], status_fd: int) -> str:
    """Pid 1 of the new namespace (or a plain parent without one): its own session, mounts,
    then the program's worker, whose wait status it passes up; or, for a check, the candidate,
    joined to it by two pipes, after which init itself becomes the judge (a fork less, and as
    pid 1 of a pid namespace it ignores the candidate's signals): its exit status is then the
    one the supervisor reports. Returns only in a worker, or as the judge: the role."""
    try:
        os.setsid()  # a session and process group of its own: what the supervisor kills
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if facts.pop("mount_namespace"):
            facts["read_only_host"] = _private_mounts(config, facts["pid_namespace"])
            facts["private_tmp"] = True
        os.chdir(config["workdir"])
        roles = ["candidate"] if config["mode"] == "check" else ["program"]
        links: list[int] = []
        if config["mode"] == "check":
            calls_r, calls_w = os.pipe()
            answers_r, answers_w = os.pipe()
            links = [calls_r, calls_w, answers_r, answers_w]
            config["links"] = {"calls_r": calls_r, "calls_w": calls_w, "answers_r": answers_r,
                               "answers_w": answers_w}
        workers: dict[int, str] = {}
        for role in roles:
            pid = os.fork()
            if pid == 0:
                os.close(status_fd)
                return role
            workers[pid] = role
    except BaseException as exc:
        _fail_setup(config["report_fd"], exc)
    if config["mode"] == "check":
        os.close(status_fd)  # the supervisor reports init's own exit: the judge's
        return "judge"
    _close(config["report_fd"], config["test_fd"], *links)
    main = next(iter(workers))
    while True:  # as pid 1, orphans of the worker are reparented here: reap them all
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(_SETUP_FAILED)
        if pid == main:
            break
    os.write(status_fd, str(status).encode())
    os._exit(0)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _supervise(fds: list[int]) -> None:
    """Forked by the zygote for one program; runs no untrusted code. Reads the request from
    its stdin, enters new namespaces where permitted and forks init. Once init has exited, or
    on the evaluator's stop (timeout), or when the evaluator disappears: kills init's process
    group, reaps init, kills what is left of the per-run uid where no pid namespace does it,
    and reports the program's wait status. Init stays an unreaped zombie until the group kill,
    so its process group id cannot pass to another process before it. Returns only in the
    worker."""
    report_fd = _SUPERVISOR_FDS.index("report")
    try:
        _install(fds)
        status = socket.socket(fileno=_SUPERVISOR_FDS.index("status"))
        _prctl(_PR_SET_DUMPABLE, 0)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        config = json.loads(_read_all(_SUPERVISOR_FDS.index("request")))
        os.environ.clear()
        os.environ.update(_clean_env(config["workdir"]))
        namespaces = _CLONE_NEWNS | _CLONE_NEWPID | _CLONE_NEWNET | _CLONE_NEWIPC | _CLONE_NEWUTS
        user_namespace = False
        if os.geteuid() == 0:
            entered = _try_unshare(namespaces)
        else:  # an ordinary user: through an unprivileged user namespace, where the kernel allows
            entered = user_namespace = config["user_namespaces"] and _enter_user_namespace(namespaces)
        if entered:
            facts = {"network": True, "pid_namespace": True, "mount_namespace": True}
        else:
            facts = {"network": _try_unshare(_CLONE_NEWNET), "pid_namespace": False,
                     "mount_namespace": False}
        facts.update(private_tmp=False, user_namespace=user_namespace, read_only_host=False,
                     seccomp=False)
        status_r, status_w = os.pipe()
        init = os.fork()
    except BaseException as exc:
        _fail_setup(report_fd, exc)  # the evaluator sees the status socket close: an error
    if init == 0:
        os.close(status_r)
        status.close()
        role = _init(config, facts, status_w)
        {"program": _worker, "judge": _judge_process, "candidate": _candidate}[role](config, facts)
        return
    os.close(status_w)
    for fd in range(_SUPERVISOR_FDS.index("status")):
        os.close(fd)  # the request and output pipes are the evaluator's and the worker's
    _await_exit_or_stop(status, init)
    for kill in (os.kill, os.killpg):  # init (even before its setsid), then its group
        try:
            kill(init, signal.SIGKILL)
        except OSError:
            pass
    _, init_status = os.waitpid(init, 0)
    if config["uid"] is not None and not facts["pid_namespace"]:
        for uid in (config["uid"], config["judge_uid"]):
            _kill_all_of(uid)  # what left the group (setsid, double fork)
    os.set_blocking(status_r, False)
    try:
        status_text = os.read(status_r, 64)
    except BlockingIOError:
        status_text = b""
    wait_status = int(status_text) if status_text else init_status
    _send(status, json.dumps({"status": wait_status}).encode())
    _await_close(status)
    os._exit(0)


def _await_close(status: socket.socket) -> None:
    """Leave only after the evaluator closed its end: a socket closed with a message unread
    (a stop sent as the program exited) makes the evaluator's read of our reply fail."""
    try:
        while status.recv(64):
            pass
    except OSError:
        pass


def _await_exit_or_stop(status: socket.socket, init: int) -> None:
    """Wait until init has exited, the evaluator says stop, or the evaluator is gone."""
    try:
        pidfd: int | None = os.pidfd_open(init)
    except (AttributeError, OSError):  # Linux before 5.3: poll instead
        pidfd = None
    while True:
        watched: list[Any] = [status] if pidfd is None else [status, pidfd]
        ready = select.select(watched, [], [], None if pidfd is not None else 0.01)[0]
        if status in ready:
            return  # the stop (or the evaluator's end closing); read in _await_close
        if pidfd in ready if pidfd is not None else _has_exited(init):
            return


def _kill_all_of(uid: int) -> None:
    """Kill every process owned by ``uid`` by becoming that uid and signalling -1."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def _has_exited(pid: int) -> bool:
    """True once ``pid`` is a zombie; it stays unreaped so its pid and group id are not reused."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _send(sock: socket.socket, message: bytes) -> None:
    try:
        sock.send(message)
    except OSError:
        pass  # the evaluator is gone; the kill follows all the same


def _install(fds: list[int]) -> None:
    """Move the received descriptors to 0, 1, 2, ... and close every other one, whatever
    numbers they arrived as."""
    parked = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, _FD_PARKING) for fd in fds]
    for fd in fds:
        os.close(fd)
    for target, fd in enumerate(parked):
        os.dup2(fd, target)
    os.closerange(len(parked), max(resource.getrlimit(resource.RLIMIT_NOFILE)[0], _FD_PARKING * 2))


def _zygote_loop(control_fd: int) -> None:
    """The zygote: for every request (the descriptors of ``_SUPERVISOR_FDS``) fork a supervisor,
    then forget the descriptors. It never reads what travels through them. Exits when the
    evaluator closes the control socket. Returns only in a worker, after its program ran."""
    _prctl(_PR_SET_DUMPABLE, 0)  # same-uid programs may not ptrace it or read its memory
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps finished supervisors
    control = socket.socket(fileno=control_fd)
    _interpreter_paths()  # computed once here rather than in every init
    for name in ("prctl", "mount", "unshare"):  # resolved once here rather than in every child
        getattr(_libc(), name)
    _syscall_numbers()
    gc.freeze()  # children's collections skip what exists now: fewer copy-on-write faults
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 16, len(_SUPERVISOR_FDS) + 1)
        except OSError:
            os._exit(0)
        if not message:
            os._exit(0)  # the evaluator closed its end: it exited or died
        if message != b"run" or len(fds) != len(_SUPERVISOR_FDS):
            for fd in fds:
                os.close(fd)
            continue
        try:
            supervisor = os.fork()
        except OSError:
            supervisor = -1  # the evaluator sees the status socket close without a word
        if supervisor == 0:
            control.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            _supervise(fds)
            return
        for fd in fds:
            os.close(fd)


if __name__ == "__main__":
    if sys.argv[1:2] != ["--zygote"] or len(sys.argv) != 3:
        sys.exit("usage: sandbox.py --zygote CONTROL_FD (started by the evaluator)")
    _zygote_loop(int(sys.argv[2]))
