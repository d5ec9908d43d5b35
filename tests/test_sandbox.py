"""Adversarial programs against the sandbox: each must be contained, scored, and bounded in time.

Wall-time bounds are loose (the machine is shared); what matters is that nothing hangs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pytest_distillbench.engine import sandbox
from pytest_distillbench.engine.sandbox import SandboxResult, check_completion, run_python

REPO = Path(__file__).resolve().parents[1]
IS_ROOT = os.geteuid() == 0
BOUND_S = 30.0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="this protection needs root (see the sandbox docstring)")

PROMPT = 'def add(a, b):\n    """Return a + b."""\n'
TEST = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"
FLOAT_PROMPT = 'def half(x):\n    """Return x / 2."""\n'
FLOAT_TEST = "def check(candidate):\n    assert abs(candidate(3) - 1.5) < 1e-9\n"


def run(source: str, **kwargs) -> SandboxResult:
    start = time.monotonic()
    result = run_python(textwrap.dedent(source), **kwargs)
    assert time.monotonic() - start < BOUND_S
    return result


def live_processes_of(uid: int) -> list[int]:
    """Pids of processes owned by ``uid`` that are not zombies (zombies wait for init to reap)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields["Uid"].split()[0]) == uid and not fields["State"].strip().startswith("Z"):
            pids.append(int(entry.name))
    return pids


def test_a_correct_program_passes_with_its_output():
    result = run("import sys\nprint('hello')\nprint('oops', file=sys.stderr)\n")
    assert result.status == "passed" and result.passed
    assert result.returncode == 0
    assert result.stdout == "hello\n" and result.stderr == "oops\n"
    assert not result.truncated


@pytest.mark.parametrize(("source", "status", "code"), [
    ("import sys\nsys.exit(3)\n", "failed", 3),
    ("raise ValueError('bad')\n", "failed", 1),
    ("def broken(:\n", "failed", 1),
    ("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n", "killed", -11),
])
def test_exit_codes_and_signals_are_scored(source, status, code):
    result = run(source)
    assert (result.status, result.returncode) == (status, code)


def test_a_traceback_reaches_stderr():
    result = run("def f():\n    raise ValueError('bad input')\nf()\n")
    assert "ValueError: bad input" in result.stderr
    assert 'File "<sandbox>", line 2' in result.stderr


def test_an_infinite_loop_times_out():
    start = time.monotonic()
    result = run("while True:\n    pass\n", timeout_s=1.5)
    assert result.status == "timeout"
    assert 1.4 < time.monotonic() - start < BOUND_S


def test_the_cpu_limit_kills_a_busy_program_before_the_wall_clock():
    result = run("while True:\n    pass\n", timeout_s=25, cpu_s=1)
    assert result.status == "killed"
    assert "SIGXCPU" in result.reason or "SIGKILL" in result.reason
    assert result.seconds < 20


def test_a_sleeping_program_times_out_on_the_wall_clock():
    result = run("import time\ntime.sleep(60)\n", timeout_s=1.0)
    assert result.status == "timeout" and result.seconds < BOUND_S


@needs_root
def test_a_fork_loop_is_contained_and_leaves_nothing_behind():
    source = """
    import os
    while True:
        try:
            os.fork()
        except OSError:
            pass
    """
    result = run(source, timeout_s=2.0, max_processes=32)
    assert result.status in {"timeout", "killed", "failed"}
    if result.isolation.uid is not None:
        time.sleep(0.2)
        assert live_processes_of(result.isolation.uid) == []


@needs_root
def test_a_daemonised_straggler_is_killed_after_the_program_exits():
    source = """
    import os, time
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            time.sleep(300)
        os._exit(0)
    print("parent done")
    """
    result = run(source, timeout_s=10)
    assert result.status == "passed" and result.stdout == "parent done\n"
    assert result.seconds < BOUND_S
    if result.isolation.uid is not None:
        time.sleep(0.2)
        assert live_processes_of(result.isolation.uid) == []


def test_a_memory_hog_fails_with_memory_error():
    source = """
    chunks = []
    while True:
        chunks.append(bytearray(16 * 1024 * 1024))
    """
    result = run(source, memory_mb=256)
    assert result.status == "failed"
    assert "MemoryError" in result.stderr


def test_one_huge_allocation_fails():
    result = run("x = bytearray(8 * 1024 ** 3)\n", memory_mb=512)
    assert result.status == "failed" and "MemoryError" in result.stderr


def test_an_endless_output_flood_is_capped_and_times_out():
    source = """
    import sys
    while True:
        sys.stdout.write("x" * 65536)
        sys.stderr.write("y" * 65536)
    """
    result = run(source, timeout_s=2.0, max_output_bytes=10_000)
    assert result.status == "timeout"
    assert result.truncated
    assert len(result.stdout) <= 10_000 and len(result.stderr) <= 10_000
    assert set(result.stdout) <= {"x"}


def test_a_finite_flood_keeps_exactly_the_cap_and_still_passes():
    result = run("import sys\nsys.stdout.write('z' * 50_000_000)\n", max_output_bytes=4096)
    assert result.status == "passed"
    assert result.truncated
    assert result.stdout == "z" * 4096


def test_the_file_size_limit_stops_a_huge_file():
    source = """
    with open("big.bin", "wb") as fh:
        for _ in range(64):
            fh.write(b"\\0" * 1024 * 1024)
    """
    result = run(source, max_file_bytes=1024 * 1024)
    assert result.status != "passed"
    assert "File too large" in result.stderr or "No space left" in result.stderr


def test_the_working_directory_is_private_writable_and_removed():
    source = """
    import os
    with open("notes.txt", "w") as fh:
        fh.write("kept while running")
    print(os.getcwd())
    print(open("notes.txt").read())
    """
    result = run(source)
    assert result.status == "passed", result.stderr
    workdir, content = result.stdout.splitlines()
    assert content == "kept while running"
    assert not Path(workdir).exists()


@needs_root
def test_writes_outside_the_working_directory_do_not_reach_the_host():
    name = f"distillbench-escape-{uuid.uuid4().hex}"
    targets = [Path("/tmp") / name, Path("/var/tmp") / name, Path("/dev/shm") / name, REPO / name]
    source = f"""
    for target in {[str(t) for t in targets]!r}:
        try:
            with open(target, "w") as fh:
                fh.write("escaped")
            print("wrote", target)
        except OSError as exc:
            print("refused", target, type(exc).__name__)
    """
    try:
        result = run(source)
        assert result.status == "passed", result.stderr
        assert [t for t in targets if t.exists()] == []
        assert f"refused {REPO / name}" in result.stdout
    finally:
        for target in targets:
            target.unlink(missing_ok=True)


def test_files_outside_cannot_be_read_or_deleted(tmp_path):
    canary = tmp_path / "canary.txt"
    canary.write_text("the evaluator's file")
    canary.chmod(0o666)
    source = f"""
    import os, shutil
    for attempt in (lambda: print(open({str(canary)!r}).read()),
                    lambda: os.remove({str(canary)!r}),
                    lambda: shutil.rmtree({str(tmp_path)!r})):
        try:
            attempt()
        except OSError as exc:
            print("refused", type(exc).__name__)
    """
    result = run(source)
    assert canary.read_text() == "the evaluator's file"
    if IS_ROOT:
        assert "the evaluator's file" not in result.stdout
        assert result.stdout.count("refused") == 3


@needs_root
def test_the_evaluators_environment_is_invisible(monkeypatch):
    secret = f"s3cret-{uuid.uuid4().hex}"
    monkeypatch.setenv("DISTILLBENCH_TEST_SECRET", secret)
    source = f"""
    import os
    print(dict(os.environ))
    for pid in (os.getppid(), 1, {os.getpid()}):
        try:
            print(open(f"/proc/{{pid}}/environ", "rb").read())
        except OSError as exc:
            print("refused", pid, type(exc).__name__)
    """
    result = run(source)
    assert result.status == "passed", result.stderr
    assert secret not in result.stdout and secret not in result.stderr
    assert "DISTILLBENCH_TEST_SECRET" not in result.stdout
    shown = eval(result.stdout.splitlines()[0])  # noqa: S307 - our own program printed a dict
    assert set(shown) <= {"PATH", "LANG", "HOME", "TMPDIR", "PYTHONDONTWRITEBYTECODE",
                          "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"}


ENVIRONMENT_PROBE = """
import json
from pytest_distillbench.engine.sandbox import run_python
result = run_python("import os\\nprint(dict(os.environ))\\ntry:\\n    print(open('/proc/self/environ', 'rb').read())\\nexcept OSError as exc:\\n    print('refused', exc)\\n")
print(json.dumps([result.status, result.stdout]))
"""


def test_a_secret_in_the_evaluators_environment_before_the_zygote_starts_stays_out():
    secret = f"s3cret-{uuid.uuid4().hex}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "DISTILLBENCH_TEST_SECRET": secret}
    proc = subprocess.run([sys.executable, "-c", ENVIRONMENT_PROBE], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    status, stdout = json.loads(proc.stdout)
    assert status == "passed" and "PATH" in stdout
    assert secret not in stdout and "DISTILLBENCH_TEST_SECRET" not in stdout


@pytest.mark.skipif(not IS_ROOT, reason="an ordinary user's sandbox may signal that user's processes")
def test_signalling_the_parent_or_everyone_does_not_reach_the_evaluator():
    source = f"""
    import os, signal
    for target in (os.getppid(), {os.getpid()}, {os.getppid()}):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(target, sig)
            except OSError as exc:
                print("refused", target, type(exc).__name__)
    os.kill(-1, signal.SIGKILL)
    """
    result = run(source)
    # Still here: the test process survived. The program took only itself down.
    assert result.status in {"killed", "passed", "failed"}
    assert os.getpid() > 0


@pytest.mark.skipif(not IS_ROOT, reason="network namespaces need root")
def test_the_network_is_unreachable():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    source = f"""
    import socket
    print([line.split(":")[0].strip() for line in open("/proc/net/dev").readlines()[2:]])
    try:
        socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
        print("connected")
    except OSError as exc:
        print("unreachable", type(exc).__name__)
    """
    try:
        result = run(source)
    finally:
        listener.close()
    assert result.isolation.network
    assert result.stdout.startswith("['lo']\nunreachable")


@pytest.mark.skipif(not IS_ROOT, reason="the uid switch and namespaces need root")
def test_as_root_the_program_runs_unprivileged_in_its_own_namespaces():
    result = run("import os\nprint(os.getuid(), os.getgid(), os.getgroups(), len(os.listdir('/proc')))\n")
    assert result.status == "passed", result.stderr
    uid, gid, groups, _ = result.stdout.split(maxsplit=3)
    assert int(uid) == int(gid) == result.isolation.uid and result.isolation.uid != 0
    assert groups.startswith("[]")
    assert result.isolation.pid_namespace and result.isolation.private_tmp


FALLBACK_SCRIPT = """
import json, sys
from pytest_distillbench.engine.sandbox import run_python
straggler = run_python("import os, time\\nif os.fork() == 0:\\n    os.setsid()\\n    time.sleep(300)\\nprint('done')\\n")
bomb = run_python("import os\\nwhile True:\\n    try:\\n        os.fork()\\n    except OSError:\\n        pass\\n", timeout_s=2.0, max_processes=16)
print(json.dumps([[r.status, r.isolation.uid, r.isolation.pid_namespace, r.isolation.network] for r in (straggler, bomb)]))
"""


@pytest.mark.skipif(not IS_ROOT or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_without_namespaces_the_per_run_uid_still_contains_stragglers_and_fork_loops():
    # Drop CAP_SYS_ADMIN so unshare() fails: the fallback path (uid switch + kill by uid) runs.
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(["setpriv", "--bounding-set", "-sys_admin", sys.executable, "-c", FALLBACK_SCRIPT],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    (s_status, s_uid, s_pidns, s_net), (b_status, b_uid, _, _) = json.loads(proc.stdout)
    assert (s_status, s_pidns, s_net) == ("passed", False, False)
    assert b_status in {"timeout", "killed", "failed"}
    time.sleep(0.2)
    assert live_processes_of(s_uid) == [] and live_processes_of(b_uid) == []


# ---------------------------------------------------------------------------------------------
# HumanEval-style checking


def check(completion: str, prompt: str = PROMPT, test: str = TEST, entry_point: str = "add"):
    start = time.monotonic()
    result = check_completion(prompt, completion, test, entry_point, timeout_s=10)
    assert time.monotonic() - start < BOUND_S
    return result


def test_a_correct_completion_passes_and_a_wrong_one_fails():
    assert check("    return a + b\n").status == "passed"
    wrong = check("    return a - b\n")
    assert wrong.status == "failed" and "AssertionError" in wrong.stderr


@pytest.mark.parametrize("completion", [
    pytest.param("    return a + b\nimport sys\nsys.exit(0)\n", id="sys.exit(0) at import"),
    pytest.param("    return a + b\nimport os\nos._exit(0)\n", id="os._exit(0) at import"),
    pytest.param("    import sys\n    sys.exit(0)\n", id="sys.exit(0) in the function"),
    pytest.param("    import os\n    os._exit(0)\n", id="os._exit(0) in the function"),
    pytest.param("    raise SystemExit(0)\n", id="SystemExit in the function"),
    pytest.param("    import os, signal\n    os.kill(os.getpid(), signal.SIGKILL)\n", id="kills itself"),
])
def test_leaving_before_check_returns_is_a_failure(completion):
    result = check(completion)
    assert result.status in {"failed", "killed"}
    assert not result.passed


@pytest.mark.parametrize("completion", [
    pytest.param("    return 0\ndef check(candidate):\n    pass\n", id="redefines check"),
    pytest.param("    return 0\nimport sys\nsys.modules['__main__'].check = lambda c: None\n",
                 id="patches __main__.check"),
    pytest.param("    return 0\nimport builtins\n"
                 "builtins.exec = lambda code, ns=None, *a: ns.update(check=lambda c: None)\n",
                 id="patches exec to plant a no-op check"),
    pytest.param("    return 0\nprint('passed')\nprint('ALL TESTS PASSED')\n", id="prints success"),
    pytest.param("    return 0\nimport os\nfor fd in range(3, 64):\n    try:\n"
                 "        os.write(fd, b'passed\\nok\\n0\\n')\n    except OSError:\n        pass\n",
                 id="writes success to every fd"),
    pytest.param("    class Any:\n        def __eq__(self, other):\n            return True\n"
                 "    return Any()\n", id="object equal to everything"),
    pytest.param("    class Sneaky(int):\n        def __eq__(self, other):\n            return True\n"
                 "    return Sneaky(0)\n", id="int subclass equal to everything"),
])
def test_forging_success_fails(completion):
    result = check(completion)
    assert result.status == "failed", (result.stdout, result.stderr)


def test_patching_builtins_does_not_fool_the_test():
    forged = "    return 0.0\nimport builtins\nbuiltins.abs = lambda x: 0\n"
    assert check(forged, FLOAT_PROMPT, FLOAT_TEST, "half").status == "failed"
    patch_at_call = "    import builtins\n    builtins.abs = lambda v: 0\n    return 0.0\n"
    assert check(patch_at_call, FLOAT_PROMPT, FLOAT_TEST, "half").status == "failed"
    assert check("    return x / 2\n", FLOAT_PROMPT, FLOAT_TEST, "half").status == "passed"


def test_the_test_sees_the_prompts_own_helpers_not_the_candidates():
    prompt = 'def square(x):\n    return x * x\n\n\ndef f(x):\n    """Return square(x) + 1."""\n'
    test = "def check(candidate):\n    assert candidate(3) == square(3) + 1\n"
    assert check("    return square(x) + 1\n", prompt, test, "f").status == "passed"
    # Redefining the helper the test relies on does not make a wrong answer right.
    cheat = "    return 0\ndef square(x):\n    return -1\n"
    assert check(cheat, prompt, test, "f").status == "failed"


def test_a_missing_entry_point_or_syntax_error_fails():
    assert check("    return a +\n").status == "failed"
    assert check("    return a + b\n", entry_point="not_there").status == "failed"


def test_a_hanging_completion_times_out():
    result = check_completion(PROMPT, "    while True:\n        pass\n", TEST, "add", timeout_s=1.5)
    assert result.status == "timeout"


# ---------------------------------------------------------------------------------------------
# Programs are forked from a long-lived zygote: nothing may pass from one program to the next.


def test_one_program_leaves_nothing_for_the_next():
    shared = Path("/tmp") / f"distillbench-planted-{uuid.uuid4().hex}"
    first = run(f"""
    import builtins, colorsys, json, os, sys
    builtins.planted = "by the first program"
    json.planted = "by the first program"
    os.environ["PLANTED"] = "by the first program"
    sys.path.append("/planted")
    sys.modules["planted"] = json
    for path in (os.path.join(os.environ["TMPDIR"], "planted.txt"), {str(shared)!r}):
        with open(path, "w") as fh:
            fh.write("by the first program")
    """)
    try:
        assert first.status == "passed", first.stderr
        second = run(f"""
        import builtins, json, os, sys
        print(sorted(name for name in ("colorsys", "planted") if name in sys.modules))
        print(hasattr(builtins, "planted"), hasattr(json, "planted"), "PLANTED" in os.environ,
              "/planted" in sys.path)
        print(os.listdir(os.environ["TMPDIR"]), os.path.exists({str(shared)!r}))
        """)
    finally:
        shared.unlink(missing_ok=True)
    assert second.status == "passed", second.stderr
    assert second.stdout.splitlines()[:2] == ["[]", "False False False False"]
    if IS_ROOT:  # without root, /tmp is the host's and shared by design
        assert second.stdout.splitlines()[2] == "[] False"


def test_only_the_standard_descriptors_reach_the_program():
    result = run("import os\nprint(sorted(int(fd) for fd in os.listdir('/proc/self/fd')))\n")
    assert result.status == "passed", result.stderr
    assert eval(result.stdout)[:3] == [0, 1, 2] and len(eval(result.stdout)) == 4  # noqa: S307 - + listdir's own


def test_program_exits_run_atexit_handlers_threads_and_finalisers_like_the_interpreter():
    source = """
    import atexit, threading, time
    class Noisy:
        def __del__(self):
            print("finalised")
    noisy = Noisy()
    atexit.register(print, "atexit")
    threading.Thread(target=lambda: (time.sleep(0.2), print("thread"))).start()
    print("main", end="")
    """
    result = run(source)
    assert result.status == "passed", result.stderr
    assert result.stdout == "main" + "thread\n" + "atexit\n" + "finalised\n"
    message = run("import sys\nsys.exit('went wrong')\n")
    assert (message.status, message.returncode, message.stderr) == ("failed", 1, "went wrong\n")
    assert run("import sys\nsys.exit(256)\n").returncode == 0  # the low 8 bits, as ever


def test_programs_run_concurrently_keep_their_own_output():
    sources = [f"import time\ntime.sleep(0.{i})\nprint({i} * 'x{i}')\n" for i in range(8)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, sources))
    assert [r.stdout for r in results] == [i * f"x{i}" + "\n" for i in range(8)]
    if IS_ROOT:
        assert len({r.isolation.uid for r in results}) == 8


def test_the_zygote_is_reused_and_restarted_when_killed():
    run("pass\n")
    zygote = sandbox._zygote_pid()
    assert zygote is not None
    run("pass\n")
    assert sandbox._zygote_pid() == zygote  # no interpreter start per program
    slow = ThreadPoolExecutor(max_workers=1).submit(run, "import time\ntime.sleep(1.5)\nprint('done')\n")
    time.sleep(0.5)
    os.kill(zygote, signal.SIGKILL)
    assert slow.result().stdout == "done\n"  # a program already running is unaffected
    assert run("print('again')\n").stdout == "again\n"
    assert sandbox._zygote_pid() not in (None, zygote)


DYING_EVALUATOR = """
import sys, tempfile, threading, time
from pytest_distillbench.engine import sandbox
def mkdtemp(**kwargs):  # the work directory is the evaluator's to remove: tell the test
    path = tempfile.mkdtemp(**kwargs)
    print(path, flush=True)
    return path
sandbox.tempfile = type("Tempfile", (), {"mkdtemp": staticmethod(mkdtemp)})
threading.Thread(target=sandbox.run_python, args=("import time\\ntime.sleep(120)\\n",),
                 kwargs={"timeout_s": 120}, daemon=True).start()
time.sleep(2)
print(sandbox._zygote_pid(), flush=True)
time.sleep(120)
"""


def descendants_of(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = dict(line.split(":", 1) for line in (entry / "status").read_text().splitlines())
            except (OSError, ValueError):
                continue
            children.setdefault(int(fields["PPid"]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        return not (Path(f"/proc/{pid}/status").read_text().split("State:")[1].strip().startswith("Z"))
    except (OSError, IndexError):
        return False


def test_when_the_evaluator_dies_the_zygote_and_its_programs_go_too():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    evaluator = subprocess.Popen([sys.executable, "-c", DYING_EVALUATOR], stdout=subprocess.PIPE, text=True, env=env)
    workdir = None
    try:
        workdir = evaluator.stdout.readline().strip()
        zygote = int(evaluator.stdout.readline())
        tree = [zygote, *descendants_of(zygote)]
        assert len(tree) >= 4  # zygote, supervisor, init, worker
    finally:
        evaluator.kill()
        evaluator.wait()
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)  # a killed evaluator cannot
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in tree) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in tree if alive(pid)] == []
