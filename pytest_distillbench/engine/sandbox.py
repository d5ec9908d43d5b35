"""Isolated execution of untrusted, model-generated Python programs.

Every program runs in a process tree of its own, so that whatever it does the evaluating
process neither crashes nor hangs. The trees are forked from one long-lived "zygote", so a
program costs a few forks rather than an interpreter start::

    evaluator ──Popen, once──► zygote (this file run as a script; never runs untrusted code)
        │ per program: pipes and a status socket, passed over a Unix socket (SCM_RIGHTS)
        ▼
    zygote ──fork──► supervisor: reads the request from its stdin; once init exits (or on
                       │  timeout) kills init's process group, reaps it, reports the status
                       │  unshare(pid, net, mount, ipc, uts namespaces) where permitted
                       └─fork─► init (pid 1 of the new pid namespace): own session
                                  │  private /proc, fresh tmpfs over /tmp and other
                                  │  world-writable directories, tmpfs work directory
                                  └─fork─► worker: rlimits, unprivileged uid, runs the code

The zygote only receives descriptors and forks: it never reads a request, so no program, test
or token ever enters its memory, and every program starts from the same state, that of a
freshly started ``python -I`` with this module loaded (nothing a previous program imported,
patched or set is there). Namespaces, the uid switch, rlimits and the environment are applied
after the fork, per program, by the supervisor, init and worker.

What is contained, and how:

- **Time**: the evaluator enforces a wall-clock deadline, on which the supervisor kills init's
  whole process group; RLIMIT_CPU bounds CPU time per process.
- **Memory / files / descriptors**: RLIMIT_AS, RLIMIT_FSIZE, RLIMIT_NOFILE; core dumps off.
- **Output floods**: stdout and stderr are pipes drained incrementally; at most
  ``max_output_bytes`` of each is kept and the rest is discarded (``truncated`` is set).
- **Fork loops**: when the evaluator runs as root (where RLIMIT_NPROC is not enforced) the
  worker drops to a fresh, otherwise unused uid chosen per run, so RLIMIT_NPROC applies and
  counts only this run's processes. When init (pid 1 of the pid namespace) exits, the kernel
  kills every process left in the namespace; without a pid namespace the supervisor kills
  every process of the per-run uid (``kill(-1)`` as that uid), which also catches processes
  that left the process group with ``setsid``, once init has exited or been killed.
- **Files**: the program's working directory is a fresh size-limited tmpfs (or, without a
  mount namespace, a fresh directory owned by the per-run uid) removed afterwards. /tmp,
  /var/tmp, /dev/shm and /run/lock are replaced by private tmpfs mounts, so writes there never
  reach the host. Root-owned files are out of reach of the unprivileged uid. Directories that
  only root may enter (e.g. a Python installed under /root) are replaced by a tmpfs exposing
  just the interpreter's own paths, which also hides the rest of them.
- **Environment / secrets**: the zygote starts with a minimal environment and each supervisor
  replaces it with its own (PATH, LANG, HOME, TMPDIR, thread counts); nothing is inherited
  from the evaluator. With a pid namespace and a private /proc the program cannot see other
  processes at all.
- **Signals**: the unprivileged uid may not signal the evaluator; inside a pid namespace the
  evaluator's pid does not even exist.
- **Network**: a new network namespace has only a loopback device, which is down.
  ``SandboxResult.isolation`` records which of these protections were actually in force.

Where protections do not apply: namespaces and the uid switch need root (CAP_SYS_ADMIN and
CAP_SETUID). Run as an ordinary user, the program keeps that user's rights: it can reach the
network, write where the user can, see and signal the user's other processes, and
RLIMIT_NPROC is left alone (it would count all of the user's processes); only the rlimits,
the wall-clock deadline, the process-group kill, the output cap and the environment scrub
remain; such a program can also kill the zygote (the next program starts a new one; programs
already running are unaffected). As root without CAP_SYS_ADMIN (no mount namespace), an
interpreter installed under a directory only root may enter cannot load modules the zygote
had not already imported.
All programs share the zygote's string-hash seed (the order of sets of str), as forked
processes do. This module is not a defence against kernel exploits or side channels.
"""

from __future__ import annotations

import atexit
import builtins
import ctypes
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
_SUPERVISOR_FDS = ("request", "stdout", "stderr", "report", "status")  # its descriptors 0, 1, ...
_FD_PARKING = 64  # received descriptors are parked at or above this while being renumbered
_STOP_TIMEOUT_S = 30.0  # how long the evaluator waits for the wait status after a stop
_ZYGOTE_SEND_TIMEOUT_S = 30.0  # how long handing a request to the zygote may block

# Linux constants (sched.h, mount.h, prctl.h)
_CLONE_NEWNS = 0x00020000
_CLONE_NEWUTS = 0x04000000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWPID = 0x20000000
_CLONE_NEWNET = 0x40000000
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 2, 4, 8
_MS_BIND, _MS_REC, _MS_PRIVATE = 4096, 16384, 1 << 18
_PR_SET_PDEATHSIG, _PR_SET_DUMPABLE, _PR_SET_NO_NEW_PRIVS = 1, 4, 38


@dataclass(frozen=True)
class Isolation:
    """Which protections were in force for one run (see the module docstring)."""

    network: bool = False  # own network namespace: no route anywhere
    pid_namespace: bool = False  # own pid namespace: other processes invisible, stragglers die
    private_tmp: bool = False  # tmpfs work directory and /tmp: nothing written reaches the host
    uid: int | None = None  # the unprivileged uid the program ran as (None: the caller's own)


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
    return _execute({"mode": "program", "source": source}, limits, nonce=None)


def check_completion(prompt: str, completion: str, test: str, entry_point: str, *,
                     timeout_s: float = 10.0, memory_mb: int = 1024,
                     max_output_bytes: int = 65536) -> SandboxResult:
    """Score a HumanEval-style completion: ``prompt + completion`` must define ``entry_point``
    and ``check(entry_point)`` from ``test`` must return.

    Success is proven by a random per-run token that the harness writes to a channel other
    than stdout/stderr only after ``check`` returned; the result is "passed" only with that
    token *and* exit code 0. Defended against:

    - leaving early: ``sys.exit(0)``, ``os._exit(0)``, ``raise SystemExit`` (at import or
      inside the function), a crash or kill, anything that ends before ``check`` returned;
    - printing a fake success marker, or writing guesses to every file descriptor: the token
      is random per run, never on disk, in argv or the environment, and stdin is emptied;
    - redefining or patching ``check``: the test runs in its own namespace, built from the
      prompt alone (so helpers such as ``poly`` are pristine) and executed after the candidate;
    - patching builtins (e.g. ``builtins.abs = ...``): builtins are restored before the test
      runs and the test gets its own copy of the builtins dictionary;
    - returning an object that compares equal to everything: the candidate's return values
      must be plain built-in values (None, bool, int, float, complex, str, bytes and lists,
      tuples, dicts, sets of them), exact types, not subclasses.

    Not defended against: code that deliberately digs the token out of the harness (frame
    introspection, ``gc``, reading process memory) and writes it to the report channel itself,
    or that patches attributes of shared modules the test imports (``math.isclose = ...``).
    Model-generated code that does such things has to be caught by reading it.
    """
    limits = _Limits(timeout_s, memory_mb, None, max_output_bytes, 64, 16 * 1024 * 1024)
    problem = {"prompt": prompt, "completion": completion, "test": test, "entry_point": entry_point}
    return _execute({"mode": "check", "problem": problem}, limits, nonce=secrets.token_hex(16))


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
    status: socket.socket

    def close(self) -> None:
        for fd in (self.request, self.stdout, self.stderr, self.report):
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


def _pump(channels: _Channels, payload: bytes, captures: dict[int, _Capture],
          deadline: float) -> tuple[int | None, bool]:
    """Feed the request and drain stdout, stderr and the report pipe until they close and the
    supervisor has reported the program's exit, the exit was reported a grace period ago, or
    the deadline passes. Returns (the program's wait status or None, timed out)."""
    sel = selectors.DefaultSelector()
    os.set_blocking(channels.request, False)
    sel.register(channels.request, selectors.EVENT_WRITE)
    for fd in captures:
        sel.register(fd, selectors.EVENT_READ)
    status_fd = channels.status.fileno()
    sel.register(status_fd, selectors.EVENT_READ)
    view = memoryview(payload)
    wait_status: int | None = None
    reported_at: float | None = None
    try:
        while set(sel.get_map()) - {channels.request}:
            now = time.monotonic()
            if now >= deadline:
                return wait_status, wait_status is None
            if reported_at is not None and now - reported_at > _DRAIN_GRACE_S:
                break  # a straggler outside the killed group holds a pipe open
            for key, _ in sel.select(timeout=min(0.1, deadline - now)):
                fd = key.fd
                if fd == channels.request:
                    try:
                        written = os.write(fd, view[:65536])
                        view = view[written:]
                    except (BrokenPipeError, BlockingIOError):
                        view = view[:0]
                    if not view:
                        sel.unregister(fd)
                        os.close(fd)
                        channels.request = -1
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


def _execute(request: dict[str, Any], limits: _Limits, *, nonce: str | None) -> SandboxResult:
    start = time.monotonic()
    deadline = start + limits.timeout_s
    uid = _UID_BASE + secrets.randbelow(_UID_SPAN) if os.geteuid() == 0 else None
    workdir = tempfile.mkdtemp(prefix="distillbench-sandbox-")
    config = {**request, "nonce": nonce, "uid": uid, "workdir": workdir,
              "report_fd": _SUPERVISOR_FDS.index("report"), "rlimits": limits.rlimits()}
    channels = None
    try:
        if uid is not None:
            os.chown(workdir, uid, uid)
        payload = json.dumps(config).encode()
        channels = _start()
        out, err, report = (_Capture(limits.max_output_bytes), _Capture(limits.max_output_bytes),
                            _Capture(_REPORT_CAP))
        captures = {channels.stdout: out, channels.stderr: err, channels.report: report}
        wait_status, timed_out = _pump(channels, payload, captures, deadline)
        if timed_out:
            wait_status = _stop(channels)
        facts, later = _parse_report(bytes(report.data))
        isolation = Isolation(**{k: facts[k] for k in ("network", "pid_namespace",
                                                       "private_tmp", "uid") if k in facts}) \
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
        return "failed", "exited with code 0 before check() returned (no success token)"
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


def _private_mounts(config: dict[str, Any], pid_namespace: bool) -> None:
    """Inside the new mount namespace: nothing propagates back to the host."""
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    if pid_namespace:
        _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    _expose_interpreter()
    size = f"size={_SCRATCH_MB}m"
    for directory in _WORLD_WRITABLE:
        if os.path.isdir(directory) and os.stat(directory).st_mode & stat.S_IWOTH:
            _mount("tmpfs", directory, "tmpfs", _MS_NOSUID | _MS_NODEV, f"{size},mode=1777")
    workdir, uid = config["workdir"], config["uid"]
    os.makedirs(workdir, exist_ok=True)  # may now lie in the fresh /tmp
    owner = f",uid={uid},gid={uid}" if uid is not None else ""
    _mount("tmpfs", workdir, "tmpfs", _MS_NOSUID | _MS_NODEV, f"{size},mode=0700{owner}")


def _drop_privileges(config: dict[str, Any]) -> None:
    for name, value in config["rlimits"].items():
        if name == "RLIMIT_NPROC" and config["uid"] is None:
            continue  # for an ordinary user it would count all of the user's processes
        limit = getattr(resource, name)
        hard = value + 1 if name == "RLIMIT_CPU" else value  # SIGXCPU first, SIGKILL a second later
        resource.setrlimit(limit, (value, hard))
    uid = config["uid"]
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # a uid change cleared it


def _worker(config: dict[str, Any], facts: dict[str, Any]) -> None:
    """Last trusted step: limits, privileges, facts; then the untrusted code runs."""
    report_fd = config["report_fd"]
    try:
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.chdir(config["workdir"])
        _drop_privileges(config)
        facts["uid"] = config["uid"]
        _report(report_fd, facts)
    except BaseException as exc:
        _fail_setup(report_fd, exc)
    if config["mode"] == "check":
        nonce = config.pop("nonce")
        problem = config.pop("problem")
        config.clear()
        _run_check(problem, nonce, report_fd)  # never returns
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


_PLAIN_TYPES = frozenset({type(None), bool, int, float, complex, str, bytes, list, tuple, dict,
                          set, frozenset})


def _require_plain(value: object, _type: Any = type, _id: Any = id, _plain: Any = _PLAIN_TYPES,
                   _error: Any = TypeError) -> None:
    """Reject anything but exact built-in value types (no custom ``__eq__``). The builtins are
    bound as defaults so that a candidate patching ``builtins`` cannot switch the check off."""
    stack, seen = [value], set()
    while stack:
        item = stack.pop()
        kind = _type(item)
        if kind not in _plain:
            raise _error(f"candidate returned a {kind.__name__}; only built-in values are accepted")
        if kind in (list, tuple, set, frozenset, dict) and _id(item) not in seen:
            seen.add(_id(item))
            stack.extend(item.items() if kind is dict else item)


def _run_check(problem: dict[str, str], nonce: str, report_fd: int) -> None:
    """Candidate first, in its own module; then the test, in a namespace built from the prompt
    alone with a private copy of the builtins; the token is written only after check() returned."""
    write, hard_exit, settrace, setprofile = os.write, os._exit, sys.settrace, sys.setprofile
    token = ("\n" + nonce + "\n").encode()  # starts a fresh line after any partial one
    del nonce
    pristine = dict(builtins.__dict__)
    prompt, entry_point = problem["prompt"], problem["entry_point"]
    try:
        module = types.ModuleType("candidate")
        sys.modules["candidate"] = module
        exec(compile(prompt + problem["completion"], "<candidate>", "exec"), module.__dict__)
        function = module.__dict__[entry_point]
        builtins.__dict__.clear()
        builtins.__dict__.update(pristine)
        settrace(None)
        setprofile(None)

        def candidate(*args: Any, **kwargs: Any) -> Any:
            result = function(*args, **kwargs)
            _require_plain(result)
            return result

        namespace: dict[str, Any] = {"__name__": "check_env", "__builtins__": dict(pristine)}
        try:
            exec(compile(prompt, "<prompt>", "exec"), namespace)
        except SyntaxError:  # a prompt that is not a program by itself: reuse the candidate's
            namespace.update({k: v for k, v in module.__dict__.items() if k != "__builtins__"})
        namespace.pop("check", None)
        namespace[entry_point] = candidate
        exec(compile(problem["test"], "<test>", "exec"), namespace)
        namespace["check"](candidate)
    except BaseException:  # SystemExit too: leaving before check() returned is a failure
        try:
            traceback.print_exc()
            sys.stderr.flush()
        finally:
            hard_exit(1)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    try:
        write(report_fd, token)
    except BaseException:
        hard_exit(1)
    hard_exit(0)  # skip the candidate's atexit handlers and threads


def _init(config: dict[str, Any], facts: dict[str, Any], status_fd: int) -> None:
    """Pid 1 of the new namespace (or a plain parent without one): its own session, mounts,
    then the worker; passes the worker's wait status up. Returns only in the worker."""
    try:
        os.setsid()  # a session and process group of its own: what the supervisor kills
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if facts.pop("mount_namespace"):
            _private_mounts(config, facts["pid_namespace"])
            facts["private_tmp"] = True
        os.chdir(config["workdir"])
        worker = os.fork()
    except BaseException as exc:
        _fail_setup(config["report_fd"], exc)
    if worker == 0:
        os.close(status_fd)
        return
    os.close(config["report_fd"])
    while True:  # as pid 1, orphans of the worker are reparented here: reap them all
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(_SETUP_FAILED)
        if pid == worker:
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
        if _try_unshare(namespaces):
            facts = {"network": True, "pid_namespace": True, "mount_namespace": True}
        else:
            facts = {"network": _try_unshare(_CLONE_NEWNET), "pid_namespace": False,
                     "mount_namespace": False}
        facts["private_tmp"] = False
        status_r, status_w = os.pipe()
        init = os.fork()
    except BaseException as exc:
        _fail_setup(report_fd, exc)  # the evaluator sees the status socket close: an error
    if init == 0:
        os.close(status_r)
        status.close()
        _init(config, facts, status_w)
        _worker(config, facts)
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
        _kill_all_of(config["uid"])  # what left the group (setsid, double fork)
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
