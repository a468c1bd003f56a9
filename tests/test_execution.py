"""The sandbox (phi_jax.evals.execution): hostile programs are contained, the evaluator survives,
and none of them counts as passed.

The hostile programs run together (execute_many) in one module fixture, so the suite waits for
the slowest one (a 2.5 s time limit) once. The non-root levels are tested for real by running the
evaluator itself as `nobody` (setpriv) when the tests run as root.

Deterministic under load: a program that must get somewhere (pass, hit a memory or file limit,
print before it fails) runs with a wall limit it never nears (LONG, 120 s; it ends by itself in
well under a second of CPU), so a busy machine cannot turn it into a timeout; only programs that
never end run with the short limit, and they are checked for the limit that stopped them. CPU
limits are checked in CPU seconds, which load does not stretch. No test asserts wall time.
"""

import json
import logging
import os
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading

import pytest

from phi_jax.evals import correctness, execution, sandbox_procs

TIMEOUT = 2.5   # for programs that never end by themselves
LONG = 120.0    # for programs that end by themselves: a limit that load cannot reach
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
      "floods_output": ("import sys\nfor _ in range(200):\n  sys.stdout.write('y' * 10000)\n"
                        "raise SystemExit(1)\n"),
      "floods_forever": "import sys\nwhile True:\n  sys.stdout.write('y' * 10000)\n",
      "reads_stdin": "print(input())\n",
      "bad_utf8": "import sys\nsys.stdout.buffer.write(b'\\xff\\xfe ok')\nraise SystemExit(1)\n",
  }


NEVER_END = ("fork_bomb", "infinite_loop", "ignores_sigterm", "sleeps", "floods_forever")


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
  results = {}

  def run(names, timeout_s):
    sentinels = ["SENTINEL-X" if "before_tests" in k else None for k in names]
    out = execution.execute_many([programs[k] for k in names], workers=len(names),
                                 sentinels=sentinels, timeout_s=timeout_s, memory_mb=512)
    results.update(zip(names, out))

  try:  # both groups at once: the endless ones load the machine while the others run
    endless = [k for k in programs if k in NEVER_END]
    threads = [threading.Thread(target=run, args=(endless, TIMEOUT)),
               threading.Thread(target=run, args=([k for k in programs if k not in endless],
                                                  LONG))]
    for t in threads:
      t.start()
    for t in threads:
      t.join()
  finally:
    del os.environ["PHI_JAX_FAKE_SECRET"]
    stop.set()
    thread.join()
    listener.close()
  assert set(results) == set(programs)
  yield results, dict(canary=canary, planted=planted, received=received, marker=marker)
  if planted.exists():
    planted.unlink()


def test_isolation_level():
  iso = execution.isolation()
  assert iso.level in execution.LEVELS and iso.description and iso.reason
  if os.geteuid() == 0 and shutil.which("unshare"):
    assert iso.level == "namespaces", str(iso)
    assert iso.reason == "strongest level" and not iso.fell_back and not iso.degraded


def test_simple_programs_pass_fail_and_capture_output():
  ok, bad, syntax = execution.execute_many(
      ["print('hello')\nimport sys; print('err', file=sys.stderr)", "assert 1 + 1 == 3",
       "def f(:\n"], workers=3, timeout_s=LONG)
  assert ok.status == "passed" and ok.passed and ok.returncode == 0
  assert ok.stdout == "hello\n" and ok.stderr == "err\n"
  assert bad.status == "failed" and not bad.passed and "AssertionError" in bad.stderr
  assert syntax.status == "failed" and "SyntaxError" in syntax.stderr


def test_sentinel_required_when_given():
  assert execution.execute("print('S1')", sentinel="S1", timeout_s=LONG).passed
  missing = execution.execute("print('S1x')", sentinel="S1", timeout_s=LONG)
  assert missing.status == "failed" and "sentinel" in missing.reason


@pytest.mark.parametrize("name", ["files", "fork_bomb", "memory_bomb", "huge_allocation",
                                  "infinite_loop", "ignores_sigterm", "sleeps", "huge_file",
                                  "outlive", "network", "environment", "signal_evaluator",
                                  "deep_recursion", "exits_before_tests",
                                  "sys_exit_before_tests", "floods_output", "floods_forever",
                                  "reads_stdin", "bad_utf8"])
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
  """The endless programs are stopped by the wall limit: each process's CPU time is at most its
  own running time, so the 3 s CPU limit cannot come first, however loaded the machine is."""
  results, _ = hostile
  for name in NEVER_END:
    r = results[name]
    assert r.status == "timeout" and r.reason == f"wall time limit of {TIMEOUT:g} s", (
        name, r.reason)


def test_cpu_limit_counts_cpu_seconds():
  """An endless loop under a 1 s CPU limit and a wall limit it never reaches: SIGXCPU at the
  soft limit, or SIGKILL at the hard one (soft + 1 s) for a program that ignores SIGXCPU. The
  run records the CPU seconds the launcher measured."""
  loop, stubborn = execution.execute_many(
      ["while True:\n  pass\n",
       "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True:\n  pass\n"],
      workers=2, timeout_s=LONG, cpu_s=1)
  for r in (loop, stubborn):
    assert r.status == "timeout" and r.reason == "CPU time limit of 1 s", (r.status, r.reason)
    assert r.cpu_s is not None and r.cpu_s >= 0.9
  # Which limit ended each: the soft one (1 s) for the loop, the hard one (2 s) for the one that
  # ignores SIGXCPU. The kernel's CPU accounting and rusage differ by a few percent: compare with
  # the midpoint, not with the limits themselves.
  assert loop.returncode == -signal.SIGXCPU and loop.cpu_s < 1.5
  assert stubborn.returncode == -signal.SIGKILL and stubborn.cpu_s > 1.5


def test_resource_limits(hostile):
  results, _ = hostile
  for name in ("memory_bomb", "huge_allocation"):
    assert results[name].status == "failed" and "MemoryError" in results[name].stderr, name
  assert results["huge_file"].status == "failed"
  assert "File too large" in results["huge_file"].stderr


def test_no_process_outlives_the_run(hostile):
  results, ctx = hostile
  outlive = results["outlive"]
  if outlive.isolation in ("namespaces", "userns"):
    assert "orphan pid" in outlive.stdout, outlive.stderr
  else:  # the audit-hook guard refuses the fork
    assert "os.fork is not allowed" in outlive.stderr, outlive.stderr
  assert outlive.status == "failed" and outlive.returncode == 1
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
  flood = results["floods_output"]  # 2,000,000 bytes, then exit 1: every byte is counted
  assert flood.status == "failed" and flood.returncode == 1
  head, tail = (1 << 16) // 2, (1 << 16) // 2
  assert flood.stdout == ("y" * head + f"\n...[{2_000_000 - head - tail} bytes omitted]...\n"
                          + "y" * tail)
  assert results["floods_forever"].status == "timeout"
  assert len(results["floods_forever"].stdout) < 70_000
  assert "EOFError" in results["reads_stdin"].stderr
  assert results["bad_utf8"].stdout.endswith(" ok") and "\ufffd" in results["bad_utf8"].stdout


def test_evaluator_still_works_afterwards(hostile):
  assert execution.execute("print(sum(range(10)))", timeout_s=LONG).stdout == "45\n"


def test_execute_many_keeps_order():
  results = execution.execute_many([f"print({i} * {i})" for i in range(6)], workers=3,
                                   timeout_s=LONG)
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
level, canary, marker, long_s = sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
ending = {  # each ends by itself: a limit it never reaches, so load cannot make it a timeout
    'files': f"open({canary!r}, 'w').write('pwned')",
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
    'ok': "import os\nprint('cwd', os.getcwd())\nopen('inside.txt', 'w').write('fine')",
}
endless = {'fork_bomb': "import os\nwhile True:\n  os.fork()\n", 'loop': "while True: pass"}
iso = execution.isolation(level)
results = execution.execute_many(list(ending.values()), workers=4, timeout_s=long_s,
                                 isolation_level=level)
results += execution.execute_many(list(endless.values()), workers=2, timeout_s=2.5,
                                  isolation_level=level)
print(json.dumps({'level': iso.level, 'results': {k: [r.status, r.stdout, r.stderr[-300:]]
                                                   for k, r in zip([*ending, *endless], results)}}))
"""


def _nobody_python():
  """An interpreter the uid `nobody` can run (not one under /root)."""
  for candidate in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
    if (os.path.exists(candidate) and not sandbox_procs.exposed(candidate, "uid")
        and not sandbox_procs.unreadable(candidate)):
      return candidate
  return None


def _copy_sandbox_package(dest: pathlib.Path) -> pathlib.Path:
  """The sandbox's modules (standard library only) copied to dest/phi_jax: an importable
  checkout wherever dest is, e.g. where `nobody` can read it while the real one sits in a 0700
  folder. Returns dest."""
  (dest / "phi_jax" / "evals").mkdir(parents=True)
  shutil.copy(PACKAGE_DIR.parent / "__init__.py", dest / "phi_jax" / "__init__.py")
  for name in ("__init__", "execution", "sandbox_init", "sandbox_guard", "sandbox_procs"):
    shutil.copy(PACKAGE_DIR / f"{name}.py", dest / "phi_jax" / "evals" / f"{name}.py")
  for path in [dest, *dest.rglob("*")]:
    path.chmod(0o755 if path.is_dir() else 0o644)
  return dest


def _as_nobody(args, cwd, timeout=300):
  return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *args],
                        capture_output=True, text=True, timeout=timeout, cwd=cwd,
                        env={"PATH": "/usr/bin:/bin", "TMPDIR": str(cwd)})


def _nobody_workdir() -> pathlib.Path:
  """A mode-0700 folder (as `mktemp -d` makes) owned by nobody, right under the temp dir (pytest's
  tmp_path sits under a folder only root can enter)."""
  work = pathlib.Path(tempfile.mkdtemp(prefix="phi_jax_nobody_test_"))
  os.chown(work, 65534, 65534)
  return work


def _skip_unless_nobody_can_run():
  python = _nobody_python()
  if os.geteuid() != 0 or not shutil.which("setpriv") or python is None:
    pytest.skip("needs root, setpriv and an interpreter nobody can run")
  return python


@pytest.mark.parametrize("level", ["userns", "rlimits"])
def test_non_root_levels_as_nobody(level):
  """The evaluator itself runs as `nobody` (a real non-root user), from a private folder."""
  python = _skip_unless_nobody_can_run()
  work = _nobody_workdir()
  try:
    checkout = _copy_sandbox_package(work / "checkout")
    canary = work / "canary.txt"
    canary.write_text("intact")
    os.chown(canary, 65534, 65534)
    marker = _marker()
    run = _as_nobody([python, "-c", _NONROOT_SCRIPT, str(checkout), level, str(canary), marker,
                      str(LONG)], cwd=work)
    if level == "userns" and "does not work here" in run.stderr:
      pytest.skip(f"unprivileged user namespaces are unavailable: {run.stderr[-300:]}")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.splitlines()[-1])
    _check_fallback_report(report, level, canary, marker)
    if level == "rlimits":  # the host-side working directory was removed
      cwd = report["results"]["ok"][1].split()[1]
      assert cwd.startswith(str(work)) and not os.path.exists(cwd)
  finally:
    shutil.rmtree(work, ignore_errors=True)


def _check_fallback_report(report, level, canary, marker):
  results = report["results"]
  assert report["level"] == level
  assert results["ok"][0] == "passed", results["ok"]
  for name in ("files", "network", "ctypes_escape", "outlive"):
    assert results[name][0] == "failed", (name, results[name])
  assert results["fork_bomb"][0] in ("failed", "timeout"), results["fork_bomb"]
  assert results["loop"][0] == "timeout"
  assert canary.read_text() == "intact"
  assert _alive(marker) == []


def test_uid_level_as_root():
  """Root without namespaces: a per-run uid plus the audit-hook guard. The canary is writable by
  anyone, so only the guard stands between it and the program. The evaluator's checkout is in a
  0700 folder, which the per-run uid cannot read (the guard must not be read from there)."""
  python = _nobody_python()
  if os.geteuid() != 0 or python is None:
    pytest.skip("needs root and an interpreter other uids can run")
  work = tempfile.mkdtemp(prefix="phi_jax_uid_test_")
  try:
    os.chmod(work, 0o777)
    canary = pathlib.Path(work) / "canary.txt"
    canary.write_text("intact")
    os.chmod(canary, 0o666)
    private = pathlib.Path(work) / "private"
    private.mkdir(mode=0o700)
    checkout = _copy_sandbox_package(private / "checkout")
    private.chmod(0o700)
    marker = _marker()
    script = _NONROOT_SCRIPT.replace("isolation_level=level)",
                                     "isolation_level=level, python=sys.executable)")
    run = subprocess.run([python, "-c", script, str(checkout), "uid", str(canary), marker,
                          str(LONG)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    _check_fallback_report(json.loads(run.stdout.splitlines()[-1]), "uid", canary, marker)
  finally:
    shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# No silent fallback: the level and why are logged and recorded; a required level is enforced.


def test_level_and_reason_are_logged_on_every_call(caplog):
  iso = execution.isolation()
  for _ in range(2):
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="phi_jax.evals.execution"):
      (r,) = execution.execute_many(["print(1)"], timeout_s=LONG)
    assert r.passed and r.isolation == iso.level
    lines = [rec.getMessage() for rec in caplog.records]
    assert f"sandbox isolation: {iso.level} ({iso.reason})" in lines, lines
  row = iso.as_dict()
  assert row["level"] == iso.level and row["reason"] == iso.reason
  assert row["best_effort"] == (iso.level in ("uid", "rlimits"))


def test_results_record_isolation_and_require_is_enforced():
  problems = [{"task_id": "t/0"}]
  build = lambda problem, completion, sentinel: completion + f"\nprint({sentinel!r})\n"
  result = correctness.score(problems, [{"task_id": "t/0", "completion": "x = 1"}], build,
                             timeout_s=LONG)
  iso = execution.isolation()
  assert result["pass@1"] == 1.0 and result["isolation"] == iso.as_dict()
  assert json.loads(json.dumps(result))["isolation"]["reason"] == iso.reason
  if iso.level != execution.LEVELS[0]:
    with pytest.raises(execution.IsolationError, match="weaker than the required"):
      correctness.score(problems, [], build, require_isolation=execution.LEVELS[0])
  named = correctness.score(problems, [], build, isolation_level="rlimits",
                            require_isolation="rlimits")
  assert named["isolation"]["level"] == "rlimits"
  assert named["isolation"]["reason"] == "named by isolation_level='rlimits'"


def test_require_refuses_a_weaker_named_level(monkeypatch):
  with pytest.raises(execution.IsolationError,
                     match="'rlimits' here, weaker than the required 'uid'"):
    execution.execute("print(1)", isolation_level="rlimits", require_isolation="uid")
  with pytest.raises(execution.IsolationError, match="weaker than the required"):
    execution.execute_many(["print(1)"], isolation_level="rlimits", require_isolation="uid")
  monkeypatch.setenv("PHI_JAX_SANDBOX_REQUIRE", "uid")
  with pytest.raises(execution.IsolationError, match="PHI_JAX_SANDBOX_REQUIRE"):
    execution.isolation("rlimits")
  monkeypatch.setenv("PHI_JAX_SANDBOX_REQUIRE", "rlimit")
  with pytest.raises(ValueError, match="unknown sandbox level 'rlimit' for require_isolation"):
    execution.isolation()
  monkeypatch.delenv("PHI_JAX_SANDBOX_REQUIRE")
  assert execution.execute("print(1)", isolation_level="rlimits", require_isolation="rlimits",
                           timeout_s=LONG).passed


_FALLBACK_SCRIPT = r"""
import json, logging, sys
sys.path.insert(0, sys.argv[1])
logging.basicConfig(level=logging.INFO)
from phi_jax.evals import execution
iso = execution.isolation()
execution.execute_many(['print(1)'], timeout_s=float(sys.argv[2]))
try:
  execution.execute_many(['print(1)'], require_isolation='namespaces')
  refused = ''
except execution.IsolationError as e:
  refused = str(e)
print(json.dumps({'iso': iso.as_dict(), 'refused': refused}))
"""


def test_auto_fallback_is_explained_and_require_refuses_it():
  """A real fallback: the evaluator runs as `nobody`, where 'namespaces' (root) is unavailable."""
  python = _skip_unless_nobody_can_run()
  work = _nobody_workdir()
  try:
    checkout = _copy_sandbox_package(work / "checkout")
    run = _as_nobody([python, "-c", _FALLBACK_SCRIPT, str(checkout), str(LONG)], cwd=work)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.splitlines()[-1])
    iso = report["iso"]
    assert iso["level"] in ("userns", "rlimits") and iso["fell_back"], iso
    assert "namespaces: needs root" in iso["reason"]
    assert f"sandbox isolation: {iso['level']} ({iso['reason']})" in run.stderr
    assert f"'{iso['level']}' here, weaker than the required 'namespaces'" in report["refused"]
  finally:
    shutil.rmtree(work, ignore_errors=True)


def test_eval_cli_refuses_a_weaker_sandbox_before_loading_the_model(tmp_path):
  run = subprocess.run([sys.executable, "-m", "phi_jax.eval", "--task=humaneval",
                        f"--model={tmp_path / 'no_model'}", "--isolation=rlimits",
                        "--require_isolation=namespaces"],
                       capture_output=True, text=True, timeout=300, cwd=PACKAGE_DIR.parents[1])
  assert run.returncode == 2, run.stderr[-2000:]
  assert "weaker than the required 'namespaces'" in run.stderr
  assert "no_model" not in run.stderr  # it stopped before looking for the model


# ---------------------------------------------------------------------------------------------
# The strongest level wherever the interpreter, the venv and the checkout live (0700 folders).

_IGNORED_STDLIB = shutil.ignore_patterns("site-packages", "dist-packages", "test", "tests",
                                         "idlelib", "tkinter", "turtledemo", "ensurepip",
                                         "lib2to3", "__pycache__")


def _link_or_copy(src, dst):
  try:
    os.link(src, dst)  # same inode and modes: cheap, and the original is never written
  except OSError:
    shutil.copy2(src, dst)


@pytest.fixture(scope="module")
def private_python(tmp_path_factory):
  """(private folder, interpreter): a relocated copy of the base interpreter (executable,
  standard library, libpython) in a mode-0700 folder under /tmp, as `mktemp -d` makes, next to a
  secret file."""
  if os.geteuid() != 0 or not shutil.which("unshare"):
    pytest.skip("the namespaces level needs root and util-linux unshare")
  base = pathlib.Path(execution.default_python())
  prefix = pathlib.Path(sys.base_prefix)
  version = f"python{sys.version_info.major}.{sys.version_info.minor}"
  private = tmp_path_factory.mktemp("private")
  private.chmod(0o700)
  root = private / "interp"
  (root / "bin").mkdir(parents=True)
  _link_or_copy(base, root / "bin" / base.name)
  shutil.copytree(prefix / "lib" / version, root / "lib" / version, ignore=_IGNORED_STDLIB,
                  copy_function=_link_or_copy)
  for lib in (prefix / "lib").glob("libpython*.so*"):
    _link_or_copy(lib, root / "lib" / lib.name)
  python = root / "bin" / base.name
  check = subprocess.run([str(python), "-I", "-S", "-c", "import sys; print(sys.prefix)"],
                         capture_output=True, text=True, timeout=60)
  if check.stdout.strip() != str(root):
    pytest.skip(f"this interpreter does not relocate: {check.stdout} {check.stderr[-300:]}")
  (private / "secret.txt").write_text(SECRET)
  assert str(private).startswith(tempfile.gettempdir())
  return private, str(python)


def test_namespaces_with_the_interpreter_in_a_private_tmp_folder(private_python):
  private, python = private_python
  iso = execution.isolation(python=python)
  assert iso.level == "namespaces", str(iso)
  paths = [p for ps in sandbox_procs.exposed(python).values() for p in ps]
  assert str(private / "interp") in paths, paths
  ok, secret, write, network = execution.execute_many([
      "import sys; print(sys.prefix)",
      f"print(open({str(private / 'secret.txt')!r}).read())",
      f"open({python + '.pwned'!r}, 'w').write('x')",
      "import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)",
  ], python=python, timeout_s=LONG)
  assert ok.passed and ok.isolation == "namespaces", (ok.reason, ok.stderr)
  assert ok.stdout.strip() == str(private / "interp")
  assert secret.status == "failed" and "FileNotFoundError" in secret.stderr, secret.stderr
  assert write.status == "failed" and "Read-only file system" in write.stderr, write.stderr
  assert network.status == "failed" and "OSError" in network.stderr, network.stderr
  assert not os.path.exists(python + ".pwned")
  assert private.stat().st_mode & 0o777 == 0o700  # the host's folder stayed private


_VENV_SCRIPT = r"""
import json, sys
from phi_jax.evals import execution
private, target, long_s = sys.argv[1], sys.argv[2], float(sys.argv[3])
iso = execution.isolation()
programs = ['import sys; print(sys.prefix)',
            'import json, os; print(json.dumps(sorted(os.listdir(%r))))' % private,
            "open(%r, 'w').write('x')" % target]
results = execution.execute_many(programs, timeout_s=long_s)
print(json.dumps({'iso': iso.as_dict(), 'python': execution.default_python(),
                  'results': [[r.status, r.stdout, r.stderr[-300:]] for r in results]}))
"""


def test_namespaces_with_checkout_venv_and_interpreter_in_a_private_folder(private_python):
  """The issue's layout: a checkout and its venv in a 0700 folder under /tmp, and here the venv's
  base interpreter in there too. Before the fix the namespaces probe failed at setup (paths under
  /tmp were bound after the private /tmp hid them) and 'auto' fell back to rlimits."""
  private, python = private_python
  venv = private / "venv"
  subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
  checkout = _copy_sandbox_package(private / "checkout")
  target = checkout / "phi_jax" / "evals" / "planted.txt"
  run = subprocess.run([str(venv / "bin" / "python"), "-c", _VENV_SCRIPT, str(private),
                        str(target), str(LONG)], capture_output=True, text=True, timeout=300,
                       cwd=checkout)
  assert run.returncode == 0, run.stderr[-2000:]
  report = json.loads(run.stdout.splitlines()[-1])
  assert report["iso"]["level"] == "namespaces", report["iso"]
  assert report["iso"]["reason"] == "strongest level"
  assert report["python"] == os.path.realpath(python)
  prefix, listing, planted = report["results"]
  assert prefix[0] == "passed" and prefix[1].strip() == str(private / "interp"), prefix
  # Inside the run the private folder holds only the interpreter: not the venv, the checkout or
  # the secret next to them.
  assert listing[0] == "passed" and json.loads(listing[1]) == ["interp"], listing
  assert planted[0] == "failed" and not target.exists(), planted
