"""Completions that try to pass ``check`` without solving the problem, written as an attacker
would, scored through the path the plugin uses (``tasks.code.execute_all``, default limits)
and through the library path (``sandbox.check_completion``, no trimming). None may pass.

Each attack is a body for ``add(a, b)`` that does not add; most would pass a harness that runs
``check`` in the candidate's interpreter (``test_the_attacks_work_against_a_shared_interpreter``
shows it, so none of these tests is vacuous). The same attacks run again as an unprivileged
user, with user namespaces (the ``namespaces`` level) and with the kernel refusing them (the
``seccomp`` level), asserting what the sandbox docstring promises for each level.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path

import pytest

from pytest_distillbench.engine import sandbox
from pytest_distillbench.engine.sandbox import check_completion, run_python
from pytest_distillbench.engine.tasks.code import ALLOW_ENV, Problem, execute_all

REPO = Path(__file__).resolve().parents[1]
IS_ROOT = os.geteuid() == 0
PROMPT = 'def add(a, b):\n    """Return a + b."""\n'
TEST = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"
SOCKET_DIR_ENV = "ATTACK_SOCKET_DIR"  # where the oracles listen (filled in per run)


def body(source: str, *helpers: str) -> str:
    """A function body: ``helpers`` (nested functions) first, then ``source``."""
    text = "".join(textwrap.dedent(part).strip("\n") + "\n" for part in (*helpers, source))
    return textwrap.indent(text, "    ")


# Reads the expected value that follows the call in check's bytecode (the comparison operand).
_READ_AHEAD = """
def read_ahead(frame):
    import dis
    while frame is not None and frame.f_code.co_name != "check":
        frame = frame.f_back
    if frame is None:
        return None
    for ins in dis.get_instructions(frame.f_code):
        if ins.offset > frame.f_lasti and ins.opname == "LOAD_CONST":
            return ins.argval
"""
# Builds {args: expected} from a check function's bytecode: candidate(<consts>) == <const>.
_TABLE = """
def table_of(check):
    import dis
    table, args, calling = {}, [], False
    for ins in dis.get_instructions(check):
        if ins.opname in ("LOAD_FAST", "LOAD_GLOBAL", "LOAD_NAME") and ins.argval == "candidate":
            calling, args = True, []
        elif calling and ins.opname == "LOAD_CONST":
            args.append(ins.argval)
        elif calling and ins.opname == "CALL":
            calling = None
        elif calling is None and ins.opname == "LOAD_CONST":
            table[tuple(args)] = ins.argval
            calling = False
    return table
"""
# Asks a host service for the answer (it knows: it is the attacker's oracle).
_ASK = """
def ask(family, address):
    import socket
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(3)
    s.connect(address)
    s.sendall(f"{a} {b}".encode())
    return int(s.recv(64))
"""

ATTACKS: dict[str, str] = {
    "frame oracle: sys._getframe and the bytecode after f_lasti": body("""
        import sys
        return read_ahead(sys._getframe(1))
    """, _READ_AHEAD),
    "frame oracle: __import__('inspect').currentframe()": body("""
        return read_ahead(__import__("inspect").currentframe().f_back)
    """, _READ_AHEAD),
    "frame oracle: a traceback's frames": body("""
        try:
            raise ValueError
        except ValueError as exc:
            return read_ahead(exc.__traceback__.tb_frame.f_back)
    """, _READ_AHEAD),
    "gc oracle: check's constants through gc.get_objects()": body("""
        import gc, types
        for obj in gc.get_objects():
            if isinstance(obj, types.FunctionType) and obj.__name__ == "check":
                return table_of(obj).get((a, b))
    """, _TABLE),
    "gc oracle: the test namespace through gc.get_referrers(add)": body("""
        import gc
        for ref in gc.get_referrers(add):
            if isinstance(ref, dict) and callable(ref.get("check")):
                return table_of(ref["check"]).get((a, b))
    """, _TABLE),
    "guard patch: __main__._require_plain disabled, an always-equal result": body("""
        import sys
        for module in list(sys.modules.values()):
            for name in ("_require_plain", "_encode", "_decode"):
                if hasattr(module, name):
                    setattr(module, name, lambda value, *args, **kwargs: value)
        class Equal:
            def __eq__(self, other):
                return True
            __hash__ = object.__hash__
        return Equal()
    """),
    "guard patch: an int subclass equal to everything": body("""
        class Sneaky(int):
            def __eq__(self, other):
                return True
            __hash__ = int.__hash__
        return Sneaky(0)
    """),
    "frame walk: the result token from the harness's locals": body("""
        import os, sys
        frame = sys._getframe()
        while frame is not None:
            names = frame.f_locals
            if "token" in names and "report_fd" in names:
                os.write(names["report_fd"], names["token"])
                os._exit(0)
            frame = frame.f_back
        return 0
    """),
    "token hunt: hex tokens in gc objects written to every descriptor": body("""
        import gc, os, re
        found = set()
        for obj in gc.get_objects():
            if isinstance(obj, dict):
                for value in obj.values():
                    if isinstance(value, (str, bytes)) and len(value) in (32, 34):
                        found.add(value.encode() if isinstance(value, str) else value)
        for value in found:
            if re.fullmatch(rb"\\n?[0-9a-f]{32}\\n?", value):
                for fd in range(256):
                    try:
                        os.write(fd, b"\\n" + value.strip() + b"\\n")
                    except OSError:
                        pass
        return 0
    """),
    "token hunt: the process's own memory, read through ctypes": body("""
        import ctypes, os, re
        tokens = set()
        with open("/proc/self/maps") as maps:
            regions = [line.split()[:2] for line in maps]
        for span, perms in regions:
            if not perms.startswith("rw"):
                continue
            start, end = (int(x, 16) for x in span.split("-"))
            chunk = ctypes.string_at(start, min(end - start, 64 << 20))
            tokens.update(re.findall(rb"\\n([0-9a-f]{32})\\n", chunk))
        for token in tokens:
            for fd in range(256):
                try:
                    os.write(fd, b"\\n" + token + b"\\n")
                except OSError:
                    pass
        if tokens:
            os._exit(0)
        return 0
    """),
    "token hunt: the process's own memory through /proc/self/mem": body("""
        import os, re
        tokens = set()
        with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", 0) as mem:
            for line in maps:
                span, perms = line.split()[:2]
                if perms.startswith("rw"):
                    start, end = (int(x, 16) for x in span.split("-"))
                    mem.seek(start)
                    tokens.update(re.findall(rb"\\n([0-9a-f]{32})\\n", mem.read(min(end - start, 64 << 20))))
        for token in tokens:
            for fd in range(256):
                try:
                    os.write(fd, b"\\n" + token + b"\\n")
                except OSError:
                    pass
        if tokens:
            os._exit(0)
        return 0
    """),
    "other processes: memory, environment and descriptors of every pid": body("""
        import os, re
        table = {}
        def scan(data):
            for x, y, e in re.findall(rb"candidate\\((-?\\d+), (-?\\d+)\\) == (-?\\d+)", data):
                table[int(x), int(y)] = int(e)
        me = os.getpid()
        for pid in [p for p in os.listdir("/proc") if p.isdigit() and int(p) != me]:
            for name in ("environ", "cmdline"):
                try:
                    scan(open(f"/proc/{pid}/{name}", "rb").read())
                except OSError:
                    pass
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                fds = []
            for fd in fds:
                try:
                    handle = os.open(f"/proc/{pid}/fd/{fd}", os.O_RDONLY | os.O_NONBLOCK)
                    scan(os.read(handle, 1 << 20))
                    os.close(handle)
                except OSError:
                    pass
            try:
                with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
                    for line in maps:
                        start, end = (int(x, 16) for x in line.split()[0].split("-"))
                        try:
                            mem.seek(start)
                            scan(mem.read(min(end - start, 8 << 20)))
                        except OSError:
                            pass
            except OSError:
                pass
        return table.get((a, b))
    """),
    "other processes: ptrace and process_vm_readv through ctypes": body("""
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        attached = []
        for pid in [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]:
            if libc.ptrace(16, pid, None, None) == 0:  # PTRACE_ATTACH
                attached.append(pid)
            local = ctypes.create_string_buffer(4096)
            iov_l = (ctypes.c_void_p * 2)(ctypes.cast(local, ctypes.c_void_p), 4096)
            iov_r = (ctypes.c_void_p * 2)(0x400000, 4096)
            if libc.process_vm_readv(pid, iov_l, 1, iov_r, 1, 0) > 0:
                attached.append(pid)
        print("ATTACHED", attached)
        return None
    """),
    "signals: kill the judge, the parent and everyone": body("""
        import os, signal
        for pid in [int(p) for p in os.listdir("/proc") if p.isdigit()]:
            if pid != os.getpid():
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        return 0
    """),
    "exec shadow: builtins.exec and compile replaced from the body": body("""
        import builtins
        builtins.exec = lambda code, ns=None, *args: ns.update(check=lambda c: None)
        builtins.compile = lambda *args, **kwargs: None
        return 0
    """),
    "host unix socket oracle (a path)": body("""
        import os, socket
        return ask(socket.AF_UNIX, os.path.join({dir!r}, "oracle.sock"))
    """, _ASK),
    "host unix socket oracle (abstract)": body("""
        import socket
        return ask(socket.AF_UNIX, "\\0" + {name!r})
    """, _ASK),
    "network oracle (TCP to the host's loopback)": body("""
        import socket
        return ask(socket.AF_INET, ("127.0.0.1", {port}))
    """, _ASK),
}
# Top-level code, which the plugin's trimming removes: only the library path runs it.
TOP_LEVEL_ATTACKS: dict[str, str] = {
    "exec shadow: __main__.exec from top-level code": "    return 0\nimport sys\n"
        "sys.modules['__main__'].exec = lambda code, ns=None, *a: ns.update(check=lambda c: None)\n",
    "guard patch: __main__._require_plain from top-level code": body("""
        class Equal:
            def __eq__(self, other):
                return True
        return Equal()
    """) + "import sys\nsys.modules['__main__']._require_plain = lambda *a, **k: None\n",
    "frame walk: the token from top-level code": "    return 0\n" + textwrap.dedent("""
        import os, sys
        frame = sys._getframe()
        while frame is not None:
            if "token" in frame.f_locals and "report_fd" in frame.f_locals:
                os.write(frame.f_locals["report_fd"], frame.f_locals["token"])
                os._exit(0)
            frame = frame.f_back
    """),
    "leave at import: os._exit(0) from top-level code": "    return 0\nimport os\nos._exit(0)\n",
}
# A test that leans on a shared module: patching it is enough where check shares the interpreter.
MATH_PROMPT = 'def half(x):\n    """Return x / 2."""\n'
MATH_TEST = ("import math\n\n\ndef check(candidate):\n    got = candidate(3)\n"
             "    assert math.isclose(got, 1.5)\n    assert math.isclose(candidate(5), 2.5)\n")
MATH_PATCH = body("""
    import math
    math.isclose = lambda *args, **kwargs: True
    return 0.0
""")
SHARED_INTERPRETER_ATTACKS = [name for name in ATTACKS if name.startswith(("frame oracle", "gc oracle"))] \
    + ["guard patch: an int subclass equal to everything"]


class Oracles:
    """The attacker's services on the host: a unix socket at a path every uid may reach, an
    abstract unix socket and a TCP port, each answering "a b" with a + b and counting calls."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.name = f"distillbench-oracle-{uuid.uuid4().hex}"
        self.connections = 0
        self.sockets = []
        path = socket.socket(socket.AF_UNIX)
        path.bind(str(directory / "oracle.sock"))
        os.chmod(directory / "oracle.sock", 0o777)
        abstract = socket.socket(socket.AF_UNIX)
        abstract.bind("\0" + self.name)
        tcp = socket.socket()
        tcp.bind(("127.0.0.1", 0))
        self.port = tcp.getsockname()[1]
        for sock in (path, abstract, tcp):
            sock.listen()
            sock.settimeout(0.2)
            self.sockets.append(sock)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.stop.is_set():
            for sock in self.sockets:
                try:
                    conn, _ = sock.accept()
                except OSError:
                    continue
                self.connections += 1
                with conn:
                    x, y = conn.recv(64).split()
                    conn.sendall(str(int(x) + int(y)).encode())

    def fill(self, completion: str) -> str:
        return completion.replace("{dir!r}", repr(str(self.directory))).replace(
            "{name!r}", repr(self.name)).replace("{port}", str(self.port))

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        for sock in self.sockets:
            sock.close()


@pytest.fixture(scope="module")
def oracles():
    # Not under /tmp (private in the sandbox where namespaces are in force): a directory of the
    # repository that every uid may enter, as a host's /run or home directory would be.
    directory = REPO / f".distillbench-oracles-{uuid.uuid4().hex[:8]}"
    directory.mkdir(mode=0o777)
    directory.chmod(0o777)
    served = Oracles(directory)
    try:
        yield served
    finally:
        served.close()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def allowed(monkeypatch):
    monkeypatch.setenv(ALLOW_ENV, "1")


def test_the_oracles_answer_an_unconfined_attacker(oracles):
    """The socket attacks are real: outside the sandbox each one gets the right answer."""
    for name in ("host unix socket oracle (a path)", "host unix socket oracle (abstract)",
                 "network oracle (TCP to the host's loopback)"):
        namespace: dict = {}
        exec(PROMPT + oracles.fill(ATTACKS[name]), namespace)  # noqa: S102 - our own attack code
        assert namespace["add"](2, 3) == 5, name


def test_the_attacks_work_against_a_shared_interpreter():
    """Run the way OpenAI's human-eval and EvalPlus do (check in the candidate's interpreter,
    here inside the sandbox so nothing else is at risk), the introspection attacks pass."""
    for name in SHARED_INTERPRETER_ATTACKS:
        program = PROMPT + ATTACKS[name] + "\n" + TEST + "\ncheck(add)\n"
        result = run_python(program)
        assert result.status == "passed", (name, result.stderr)


def test_the_attacks_work_against_the_previous_harness():
    """The harness before this design (check in the candidate's process, a token in its memory,
    the candidate as __main__'s neighbour) is fooled by the guard patch, the frame walk, the
    exec shadow and a scan of the process's memory: the attacks below are not vacuous."""
    revision = "93095b7"
    shown = subprocess.run(["git", "-C", str(REPO), "show", f"{revision}:pytest_distillbench/sandbox.py"],
                           capture_output=True, text=True)
    if shown.returncode != 0:
        pytest.skip(f"revision {revision} is not in this clone")
    script = shown.stdout + textwrap.dedent(f"""
        if __name__ == "sandbox_before":
            import json as _json
            _attacks = {json.dumps({**{n: TOP_LEVEL_ATTACKS[n] for n in TOP_LEVEL_ATTACKS if "exit" not in n},
                                    "memory": ATTACKS["token hunt: the process's own memory, read through ctypes"]})!r}
            print(_json.dumps({{n: check_completion({PROMPT!r}, c, {TEST!r}, "add").status
                               for n, c in _json.loads(_attacks).items()}}))
    """)
    probe = Path(REPO / f".sandbox-before-{uuid.uuid4().hex[:8]}.py")
    probe.write_text(script)
    try:
        loader = ("import importlib.util, sys; spec = importlib.util.spec_from_file_location("
                  f"'sandbox_before', {str(probe)!r}); m = importlib.util.module_from_spec(spec); "
                  "sys.modules['sandbox_before'] = m; spec.loader.exec_module(m)")
        proc = subprocess.run([sys.executable, "-c", loader], capture_output=True, text=True, timeout=120)
    finally:
        probe.unlink(missing_ok=True)
    assert proc.returncode == 0, proc.stderr
    statuses = json.loads(proc.stdout.splitlines()[-1])
    assert statuses == {name: "passed" for name in statuses}, statuses


def test_no_attack_passes_through_the_plugins_path(oracles, allowed):
    problem = Problem(PROMPT, TEST, "add")
    names = list(ATTACKS)
    before = oracles.connections
    results = execute_all([(problem, oracles.fill(ATTACKS[name])) for name in names])
    outcome = {name: (r.result.status, r.result.stderr[-300:]) for name, r in zip(names, results, strict=True)}
    passed = {name: out for name, out in outcome.items() if out[0] == "passed"}
    if not sandbox._libseccomp():  # the rlimits level: the docstring gives up the sockets there
        passed = {name: out for name, out in passed.items() if "oracle (" not in name}
    assert passed == {}
    if sandbox._libseccomp():
        assert oracles.connections == before
    for name, executed in zip(names, results, strict=True):
        assert executed.result.isolation.seccomp or not sandbox._libseccomp(), name
        if name.startswith("other processes: ptrace"):
            assert "ATTACHED []" in executed.result.stdout, executed.result.stdout
    assert os.getpid() > 0  # the signals attack did not reach this process


def test_patching_a_module_the_test_uses_does_not_reach_the_test(allowed):
    shared = run_python(MATH_PROMPT + MATH_PATCH + "\n" + MATH_TEST + "\ncheck(half)\n")
    assert shared.status == "passed", shared.stderr  # the attack works in a shared interpreter
    (patched,) = execute_all([(Problem(MATH_PROMPT, MATH_TEST, "half"), MATH_PATCH)])
    assert patched.result.status == "failed", patched.result.stderr
    (solved,) = execute_all([(Problem(MATH_PROMPT, MATH_TEST, "half"), "    return x / 2\n")])
    assert solved.result.passed


@pytest.mark.parametrize("name", list(TOP_LEVEL_ATTACKS))
def test_no_top_level_attack_passes_through_the_library_path(name):
    result = check_completion(PROMPT, TOP_LEVEL_ATTACKS[name], TEST, "add")
    assert result.status == "failed", (result.status, result.stderr)


def test_the_library_path_also_refuses_the_body_attacks(oracles):
    for name in ("guard patch: __main__._require_plain disabled, an always-equal result",
                 "frame walk: the result token from the harness's locals",
                 "exec shadow: builtins.exec and compile replaced from the body"):
        result = check_completion(PROMPT, oracles.fill(ATTACKS[name]), TEST, "add")
        assert result.status == "failed", (name, result.stderr)


def test_a_solving_completion_still_passes_with_helpers_exceptions_and_plain_values():
    prompt = ('def _helper(x):\n    return x\n\n\ndef f(xs, d):\n    """Sorted pairs, a dict, a set,'
              ' bytes, a complex and a big int; raise ValueError on an empty list."""\n')
    body_ = ("    if not xs:\n        raise ValueError('empty')\n"
             "    return (sorted(xs), {k: [v] for k, v in d.items()}, set(xs), b'ok', 1j, 10 ** 5000,"
             " float('inf'), None, True)\n")
    test = ("def check(candidate):\n"
            "    assert candidate([3, 1], {1: 'a', (2, 3): 'b'}) == ([1, 3], {1: ['a'], (2, 3): ['b']},"
            " {1, 3}, b'ok', 1j, 10 ** 5000, float('inf'), None, True)\n"
            "    assert type(candidate([1], {})[0]) is list and type(candidate([1], {})[-1]) is bool\n"
            "    assert _helper(7) == 7\n"
            "    try:\n        candidate([], {})\n    except ValueError as exc:\n"
            "        assert 'empty' in str(exc)\n    else:\n        raise AssertionError\n")
    result = check_completion(prompt, body_, test, "f")
    assert result.status == "passed", result.stderr
    wrong = check_completion(prompt, body_.replace("sorted(xs)", "list(xs)"), test, "f")
    assert wrong.status == "failed"


# ---------------------------------------------------------------------------------------------
# The same attacks as an unprivileged user


UNPRIVILEGED_RUN = """
import json, os, sys
sys.path.insert(0, {repo!r})
os.environ[{allow!r}] = "1"
from pytest_distillbench.engine import sandbox
from pytest_distillbench.engine.tasks.code import Problem, execute_all
spec = json.load(open(sys.argv[1]))
sys.path.insert(0, spec["tests"])
from test_sandbox_attacks import Oracles, PROMPT, TEST
from pathlib import Path
oracles = Oracles(Path(spec["socket_dir"]))
level = sandbox.isolation()
problem = Problem(PROMPT, TEST, "add")
names = list(spec["attacks"])
results = execute_all([(problem, oracles.fill(spec["attacks"][n])) for n in names])
probes = {{}}
for name, source in spec["probes"].items():
    r = sandbox.run_python(source.replace("EVALUATOR", str(os.getpid())).replace("WORKSPACE", spec["socket_dir"]))
    probes[name] = [r.status, r.stdout]
straggler = sandbox.run_python(
    "import os, time\\nchild = os.fork()\\nif child == 0:\\n    try:\\n        os.setsid()\\n"
    "    except OSError:\\n        pass\\n    time.sleep(300)\\n    os._exit(0)\\nprint(child)\\n")
straggler_alive = None
if not straggler.isolation.pid_namespace:  # its pid is this namespace's: is it still running?
    import time
    time.sleep(0.5)
    try:
        state = open(f"/proc/{{int(straggler.stdout)}}/status").read().split("State:")[1].split()[0]
        straggler_alive = state != "Z"
    except (OSError, ValueError):
        straggler_alive = False
from pytest_distillbench.errors import DistillbenchError
from pytest_distillbench.engine.tasks.code import require_isolation
try:
    required = require_isolation("namespaces")
except DistillbenchError as exc:
    required = str(exc)
print(json.dumps({{"uid": os.getuid(), "straggler": [straggler.status, straggler_alive], "required": required, "level": level.level, "isolation": level.describe(),
                  "connections": oracles.connections,
                  "results": {{n: [r.result.status, r.result.stdout[-200:], r.result.stderr[-300:]]
                              for n, r in zip(names, results)}}, "probes": probes}}))
oracles.close()
"""
# What the documented levels promise beyond the verdict, probed as programs.
PROBES = {
    "evaluator environ": "try:\n    print(len(open('/proc/EVALUATOR/environ','rb').read()))\n"
                         "except OSError as exc:\n    print('refused', type(exc).__name__)\n",
    "evaluator descriptors": "import os\ntry:\n    print(os.listdir('/proc/EVALUATOR/fd'))\n"
                             "except OSError as exc:\n    print('refused', type(exc).__name__)\n",
    "signal the evaluator": "import os, signal\ntry:\n    os.kill(EVALUATOR, signal.SIGCONT)\n    print('sent')\n"
                            "except OSError as exc:\n    print('refused', type(exc).__name__)\n",
    "leave the process group": "import os\ntry:\n    os.setsid()\n    print('left')\n"
                               "except OSError as exc:\n    print('refused', type(exc).__name__)\n",
    # a directory the user may write, standing for the user's home and caches
    "write the user's home": "import os\ntry:\n    open('WORKSPACE/home-probe', 'w').close()\n"
                             "    print('wrote')\nexcept OSError as exc:\n    print('refused', type(exc).__name__)\n",
}
# Run as root in a private mount namespace: expose the interpreter under /root to other uids
# (as the sandbox itself does), optionally have the kernel refuse unshare() (a system without
# unprivileged user namespaces), then become uid 65534 with setpriv, no capabilities.
DROP = """
import ctypes, os, sys
sys.path.insert(0, {repo!r})
from pytest_distillbench.engine import sandbox
sandbox._expose_interpreter()
if sys.argv[1] != "userns":
    lib = sandbox._libseccomp()
    ctx = lib.seccomp_init(sandbox._SCMP_ACT_ALLOW)
    if sys.argv[1] == "no-userns":  # the kernel refuses user namespaces
        for name, errno in (("unshare", 1), ("clone3", 38)):  # EPERM; ENOSYS: glibc falls back to clone
            assert lib.seccomp_rule_add_array(ctx, 0x00050000 | errno, sandbox._syscall_numbers()[name], 0, None) == 0
        flag = sandbox._CLONE_NEWUSER
        cond = (sandbox._ArgCmp * 1)(sandbox._ArgCmp(0, sandbox._SCMP_CMP_MASKED_EQ, flag, flag))
        assert lib.seccomp_rule_add_array(ctx, 0x00050000 | 1, sandbox._syscall_numbers()["clone"], 1, cond) == 0
    else:  # "userns-no-mount": they can be made but not used (as AppArmor's restriction does)
        assert lib.seccomp_rule_add_array(ctx, 0x00050000 | 1, sandbox._syscall_numbers()["mount"], 0, None) == 0
    assert lib.seccomp_load(ctx) == 0
os.execvp("setpriv", ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
                      "--bounding-set=-all", sys.executable, *sys.argv[2:]])
"""

needs_root_tools = pytest.mark.skipif(
    not IS_ROOT or not all(shutil.which(t) for t in ("setpriv", "unshare")) or not sandbox._libseccomp(),
    reason="switching to an unprivileged uid needs root, setpriv, unshare and libseccomp")


@pytest.fixture
def workspace():
    """Files the unprivileged user must reach: not under pytest's tmp_path (only root may
    enter it) nor /tmp (private to the sandbox where namespaces are in force)."""
    directory = REPO / f".distillbench-unprivileged-{uuid.uuid4().hex[:8]}"
    directory.mkdir()
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run_unprivileged(mode: str, tmp_path: Path) -> dict:
    socket_dir = tmp_path / "sockets"
    socket_dir.mkdir(mode=0o777)
    socket_dir.chmod(0o777)
    spec = {"attacks": ATTACKS, "probes": PROBES, "tests": str(Path(__file__).parent),
            "socket_dir": str(socket_dir)}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    (tmp_path / "run.py").write_text(UNPRIVILEGED_RUN.format(repo=str(REPO), allow=ALLOW_ENV))
    (tmp_path / "drop.py").write_text(DROP.format(repo=str(REPO)))
    for name in ("spec.json", "run.py", "drop.py"):
        (tmp_path / name).chmod(0o644)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "PYTHONPATH": str(REPO),
           "SECRET_OF_THE_EVALUATOR": uuid.uuid4().hex}
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable,
                           str(tmp_path / "drop.py"), mode, str(tmp_path / "run.py"), str(tmp_path / "spec.json")],
                          capture_output=True, text=True, env=env, timeout=600, cwd="/")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.splitlines()[-1])
    assert report["uid"] == 65534
    return report


def assert_no_attack_passed(report: dict) -> None:
    passed = {name: out for name, out in report["results"].items() if out[0] == "passed"}
    assert passed == {}, report["isolation"]
    assert report["connections"] == 0
    assert "ATTACHED []" in report["results"]["other processes: ptrace and process_vm_readv through ctypes"][1]


@needs_root_tools
def test_as_an_unprivileged_user_with_user_namespaces(workspace):
    report = run_unprivileged("userns", workspace)
    if "user namespace" not in report["isolation"]:
        pytest.skip(f"this kernel refuses unprivileged user namespaces: {report['isolation']}")
    assert report["level"] == "namespaces", report["isolation"]
    assert "read-only host" in report["isolation"]
    assert_no_attack_passed(report)
    probes = {name: stdout for name, (_, stdout) in report["probes"].items()}
    # The evaluator's pid does not exist in the program's pid namespace; the host is read-only.
    assert all(probes[name].startswith("refused") for name in PROBES), probes
    assert report["required"] == "namespaces"


@needs_root_tools
@pytest.mark.parametrize("mode", ["no-userns", "userns-no-mount"])
def test_as_an_unprivileged_user_without_user_namespaces(workspace, mode):
    report = run_unprivileged(mode, workspace)
    assert report["level"] == "seccomp", report["isolation"]
    assert_no_attack_passed(report)
    probes = {name: stdout for name, (_, stdout) in report["probes"].items()}
    # Guaranteed at this level: the evaluator's memory, environment and descriptors are out of
    # reach (not dumpable), no signal reaches it, a program cannot leave its process group.
    for name in ("evaluator environ", "evaluator descriptors", "signal the evaluator", "leave the process group"):
        assert probes[name].startswith("refused"), (name, probes[name])
    assert report["straggler"] == ["passed", False]  # the group kill reached the forked child
    # A suite that requires namespaces refuses to run here, saying why.
    assert "requires sandbox isolation 'namespaces', but here it is only seccomp" in report["required"]
    # Not guaranteed at this level (documented): the user's own files stay writable.
    assert probes["write the user's home"] in ("wrote\n", "refused PermissionError\n")
