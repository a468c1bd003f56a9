"""The sandbox (phi_jax.evals.execution): hostile programs are contained, the evaluator survives,
and none of them counts as passed.

The hostile programs run together (execute_many) in one module fixture, so the suite waits for
the slowest one (a 2 s time limit) once. The non-root levels are tested for real by running the
evaluator itself as `nobody` (setpriv) when the tests run as root.
"""

import json
import os
import pathlib
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading

import pytest

from phi_jax.evals import execution, sandbox_procs

TIMEOUT = 2.5
SECRET = "sk-test-" + secrets.token_hex(8)
PACKAGE_DIR = pathlib.Path(execution.__file__).resolve().parent


def _marker() -> str:
  return "phi-jax-orphan-" + secrets.token_hex(6)


def _alive(marker: str) -> list[int]:
  """Host pids whose command line contains `marker`."""
  pids = []
  for entry in os.listdir("/proc"):
    if entry.isdigit() and int(entry) != os.getpid():
      try:
        with open(f"/proc/{entry}/cmdline", "rb") as f:
          if marker.encode() in f.read():
            pids.append(int(entry))
      except OSError:
        pass
  return pids


def hostile_programs(canary: pathlib.Path, port: int, marker: str, parent_pid: int,
                     planted: pathlib.Path) -> dict[str, str]:
  """name -> program. Each exits 0 only if its attack worked."""
  return {
      "files": f"""
        import os, shutil
        done = []
        for attack in (lambda: open({str(canary)!r}, 'w').write('pwned'),
                       lambda: os.remove({str(canary)!r}),
                       lambda: os.chmod({str(canary)!r}, 0o777),
                       lambda: shutil.rmtree({str(canary.parent)!r}),
                       lambda: open({str(planted)!r}, 'w').write('planted')):
          try:
            attack(); done.append(1)
          except Exception as e:
            print(type(e).__name__, e)
        print('SUCCEEDED' if done else 'all blocked')
        raise SystemExit(0 if done else 1)
      """,
      "fork_bomb": """
        import os
        while True:
          try:
            os.fork()
          except OSError:
            pass
      """,
      "memory_bomb": """
        blocks = []
        while True:
          blocks.append(bytearray(1 << 24))
      """,
      "huge_allocation": "x = bytearray(64 << 30)\n",
      "infinite_loop": "while True:\n  pass\n",
      "ignores_sigterm": """
        import signal
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU):
          signal.signal(s, signal.SIG_IGN)
        while True:
          pass
      """,
      "sleeps": "import time\ntime.sleep(1000)\n",
      "huge_file": """
        with open('big.bin', 'wb') as f:
          while True:
            f.write(b'x' * (1 << 20))
      """,
      "outlive": f"""
        import os, sys
        if os.fork() == 0:
          os.setsid()
          if os.fork() == 0:
            print('orphan pid', os.getpid(), flush=True)
            os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)',
                                      {marker!r}])
          os._exit(0)
        os.wait()
        raise SystemExit(1)   # the run ends at once; the orphan must not outlive it
      """,
      "network": f"""
        import socket
        s = socket.create_connection(('127.0.0.1', {port}), timeout=2)
        s.sendall(b'exfiltrated')
        s.close()
      """,
      "environment": f"""
        import os, glob
        seen = ' '.join(os.environ.values())
        for path in glob.glob('/proc/*/environ'):
          try:
            seen += open(path, 'rb').read().decode(errors='replace')
          except OSError:
            pass
        raise SystemExit(0 if {SECRET!r} in seen else 1)
      """,
      "signal_evaluator": f"""
        import os
        for pid in ({parent_pid}, os.getppid(), 1):
          try:
            os.kill(pid, 0)
            print('CAN_SIGNAL', pid)
          except OSError as e:
            print('blocked', pid, e)
        os.kill(os.getppid(), 9)
      """,
      "deep_recursion": """
        import sys
        sys.setrecursionlimit(10 ** 8)
        def f(n):
          return f(n + 1) + 1
        f(0)
      """,
      "exits_before_tests": "import os\nos._exit(0)\nassert False\nprint('SENTINEL-X')\n",
      "sys_exit_before_tests": "import sys\nsys.exit(0)\nprint('SENTINEL-X')\n",
      "floods_output": "import sys\nwhile True:\n  sys.stdout.write('y' * 10000)\n",
      "reads_stdin": "print(input())\n",
      "bad_utf8": "import sys\nsys.stdout.buffer.write(b'\\xff\\xfe ok')\nraise SystemExit(1)\n",
  }


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
  canary_dir = tmp_path_factory.mktemp("canary")
  canary = canary_dir / "canary.txt"
  canary.write_text("intact")
  planted = PACKAGE_DIR / f"planted_{secrets.token_hex(4)}.txt"
  listener = socket.socket()
  listener.bind(("127.0.0.1", 0))
  listener.listen(8)
  listener.settimeout(0.2)
  received, stop = [], threading.Event()

  def accept():
    while not stop.is_set():
      try:
        conn, _ = listener.accept()
      except OSError:
        continue
      conn.settimeout(1)
      try:
        received.append(conn.recv(100) or b"<connected>")
      except OSError:
        received.append(b"<connected>")
      conn.close()

  thread = threading.Thread(target=accept, daemon=True)
  thread.start()
  marker = _marker()
  programs = {k: textwrap.dedent(v) for k, v in hostile_programs(
      canary, listener.getsockname()[1], marker, os.getpid(), planted).items()}
  os.environ["PHI_JAX_FAKE_SECRET"] = SECRET
  try:
    sentinels = ["SENTINEL-X" if "before_tests" in k else None for k in programs]
    results = execution.execute_many(list(programs.values()), workers=len(programs),
                                     sentinels=sentinels, timeout_s=TIMEOUT, memory_mb=512)
  finally:
    del os.environ["PHI_JAX_FAKE_SECRET"]
    stop.set()
    thread.join()
    listener.close()
  yield dict(zip(programs, results)), dict(canary=canary, planted=planted, received=received,
                                           marker=marker)
  if planted.exists():
    planted.unlink()


def test_isolation_level():
  iso = execution.isolation()
  assert iso.level in execution.LEVELS and iso.description
  if os.geteuid() == 0 and shutil.which("unshare"):
    assert iso.level == "namespaces", str(iso)


def test_simple_programs_pass_fail_and_capture_output():
  ok, bad, syntax = execution.execute_many(
      ["print('hello')\nimport sys; print('err', file=sys.stderr)", "assert 1 + 1 == 3",
       "def f(:\n"], workers=3, timeout_s=10)
  assert ok.status == "passed" and ok.passed and ok.returncode == 0
  assert ok.stdout == "hello\n" and ok.stderr == "err\n"
  assert bad.status == "failed" and not bad.passed and "AssertionError" in bad.stderr
  assert syntax.status == "failed" and "SyntaxError" in syntax.stderr


def test_sentinel_required_when_given():
  assert execution.execute("print('S1')", sentinel="S1").passed
  assert not execution.execute("print('S1x')", sentinel="S1").passed


@pytest.mark.parametrize("name", ["files", "fork_bomb", "memory_bomb", "huge_allocation",
                                  "infinite_loop", "ignores_sigterm", "sleeps", "huge_file",
                                  "outlive", "network", "environment", "signal_evaluator",
                                  "deep_recursion", "exits_before_tests",
                                  "sys_exit_before_tests", "floods_output", "reads_stdin",
                                  "bad_utf8"])
def test_hostile_program_not_passed(hostile, name):
  results, _ = hostile
  r = results[name]
  assert not r.passed and r.status in ("failed", "timeout"), (r.status, r.reason, r.stderr[-500:])


def test_files_outside_the_sandbox_are_untouched(hostile):
  results, ctx = hostile
  assert ctx["canary"].read_text() == "intact"
  assert oct(ctx["canary"].stat().st_mode & 0o777) != oct(0o777)
  assert not ctx["planted"].exists()
  assert "SUCCEEDED" not in results["files"].stdout


def test_time_limits(hostile):
  results, _ = hostile
  for name in ("infinite_loop", "ignores_sigterm", "sleeps", "fork_bomb"):
    assert results[name].status == "timeout", (name, results[name].reason)


def test_resource_limits(hostile):
  results, _ = hostile
  # Under CPU contention the gradual bomb may hit the wall limit before the memory limit.
  bomb = results["memory_bomb"]
  assert "MemoryError" in bomb.stderr or bomb.status == "timeout"
  assert "MemoryError" in results["huge_allocation"].stderr
  assert "File too large" in results["huge_file"].stderr or results["huge_file"].status == "failed"


def test_no_process_outlives_the_run(hostile):
  results, ctx = hostile
  assert "orphan pid" in results["outlive"].stdout or results["outlive"].isolation in (
      "uid", "rlimits")
  assert _alive(ctx["marker"]) == []


def test_no_network(hostile):
  _, ctx = hostile
  assert ctx["received"] == []


def test_environment_is_scrubbed(hostile):
  results, _ = hostile
  assert SECRET not in results["environment"].stdout + results["environment"].stderr


def test_cannot_signal_the_evaluator(hostile):
  results, _ = hostile
  assert "CAN_SIGNAL" not in results["signal_evaluator"].stdout


def test_early_exit_without_sentinel_fails(hostile):
  results, _ = hostile
  for name in ("exits_before_tests", "sys_exit_before_tests"):
    assert results[name].returncode == 0 and results[name].status == "failed"
    assert "sentinel" in results[name].reason


def test_output_is_bounded_and_decoded(hostile):
  results, _ = hostile
  assert len(results["floods_output"].stdout) < 70_000
  assert "bytes omitted" in results["floods_output"].stdout
  assert "EOFError" in results["reads_stdin"].stderr
  assert results["bad_utf8"].stdout.endswith(" ok") and "\ufffd" in results["bad_utf8"].stdout


def test_evaluator_still_works_afterwards(hostile):
  assert execution.execute("print(sum(range(10)))").stdout == "45\n"


def test_execute_many_keeps_order():
  results = execution.execute_many([f"print({i} * {i})" for i in range(6)], workers=3)
  assert [r.stdout for r in results] == [f"{i * i}\n" for i in range(6)]


def test_bad_arguments():
  with pytest.raises(ValueError, match="positive"):
    execution.execute("pass", timeout_s=0)
  with pytest.raises(ValueError, match="unknown sandbox level"):
    execution.execute("pass", isolation_level="chroot")


# ---------------------------------------------------------------------------------------------
# The fallback levels, forced.

_NONROOT_SCRIPT = r"""
import json, os, sys, textwrap
sys.path.insert(0, sys.argv[1])
from phi_jax.evals import execution, sandbox_procs
level, canary, marker = sys.argv[2], sys.argv[3], sys.argv[4]
programs = {
    'files': f"open({canary!r}, 'w').write('pwned')",
    'fork_bomb': "import os\nwhile True:\n  os.fork()\n",
    'network': "import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)",
    'ctypes_escape': ("import ctypes\n"
                      "raise SystemExit(ctypes.CDLL(None).unlink(%r.encode()))" % canary),
    'outlive': textwrap.dedent(f'''
        import os, sys
        if os.fork() == 0:
          os.setsid()
          os.execv(sys.executable,
                   [sys.executable, '-c', 'import time; time.sleep(60)', {marker!r}])
        import time
        time.sleep(0.5)
        raise SystemExit(1)
        '''),
    'loop': "while True: pass",
    'ok': "import os\nprint('cwd', os.getcwd())\nopen('inside.txt', 'w').write('fine')",
}
iso = execution.isolation(level)
results = execution.execute_many(list(programs.values()), workers=4, timeout_s=2.5,
                                 isolation_level=level)
print(json.dumps({'level': iso.level, 'results': {k: [r.status, r.stdout, r.stderr[-300:]]
                                                   for k, r in zip(programs, results)}}))
"""


def _nobody_python():
  """An interpreter the uid `nobody` can run (not one under /root)."""
  for candidate in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
    if os.path.exists(candidate) and not sandbox_procs.exposed(candidate):
      return candidate
  return None


@pytest.mark.parametrize("level", ["userns", "rlimits"])
def test_non_root_levels_as_nobody(level):
  """The evaluator itself runs as `nobody`: a real non-root user."""
  python = _nobody_python()
  if os.geteuid() != 0 or not shutil.which("setpriv") or python is None:
    pytest.skip("needs root, setpriv and an interpreter nobody can run")
  work = tempfile.mkdtemp(prefix="phi_jax_nobody_test_")
  try:
    canary = pathlib.Path(work) / "canary.txt"
    canary.write_text("intact")
    os.chown(work, 65534, 65534)
    os.chown(canary, 65534, 65534)
    marker = _marker()
    run = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, "-c",
         _NONROOT_SCRIPT, str(PACKAGE_DIR.parents[1]), level, str(canary), marker],
        capture_output=True, text=True, timeout=120, cwd=work,
        env={"PATH": "/usr/bin:/bin", "TMPDIR": work})
    if level == "userns" and "does not work here" in run.stderr:
      pytest.skip(f"unprivileged user namespaces are unavailable: {run.stderr[-300:]}")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.splitlines()[-1])
    _check_fallback_report(report, level, canary, marker)
    if level == "rlimits":  # the host-side working directory was removed
      cwd = report["results"]["ok"][1].split()[1]
      assert cwd.startswith(work) and not os.path.exists(cwd)
  finally:
    shutil.rmtree(work, ignore_errors=True)


def _check_fallback_report(report, level, canary, marker):
  results = report["results"]
  assert report["level"] == level
  assert results["ok"][0] == "passed", results["ok"]
  for name in ("files", "fork_bomb", "network", "ctypes_escape", "outlive", "loop"):
    assert results[name][0] in ("failed", "timeout"), (name, results[name])
  assert results["loop"][0] == "timeout"
  assert canary.read_text() == "intact"
  assert _alive(marker) == []


def test_uid_level_as_root():
  """Root without namespaces: a per-run uid plus the audit-hook guard. The canary is writable by
  anyone, so only the guard stands between it and the program."""
  python = _nobody_python()
  if os.geteuid() != 0 or python is None:
    pytest.skip("needs root and an interpreter other uids can run")
  work = tempfile.mkdtemp(prefix="phi_jax_uid_test_")
  try:
    os.chmod(work, 0o777)
    canary = pathlib.Path(work) / "canary.txt"
    canary.write_text("intact")
    os.chmod(canary, 0o666)
    marker = _marker()
    run = subprocess.run([python, "-c", _NONROOT_SCRIPT.replace(
        "execute_many(list(programs.values()),",
        "execute_many(list(programs.values()), python=sys.executable,"),
        str(PACKAGE_DIR.parents[1]), "uid", str(canary), marker],
        capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    _check_fallback_report(json.loads(run.stdout.splitlines()[-1]), "uid", canary, marker)
  finally:
    shutil.rmtree(work, ignore_errors=True)
