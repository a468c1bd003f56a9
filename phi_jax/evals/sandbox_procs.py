"""The sandbox's host-side process and identity management: per-run uids (leased with lock
files), killing every process of a run, and the paths an interpreter needs that a sandbox uid
cannot reach. Used by execution.py; standard library only."""

from __future__ import annotations

import fcntl
import functools
import json
import os
import pathlib
import secrets
import shutil
import signal
import subprocess
import time
from typing import Optional

UID_BASE = 1_900_000_000   # systemd leaves 1879048192..2147483647 unassigned
UID_POOL = 4096
NOBODY = 65534
LOCK_DIR = "/tmp/.phi_jax_sandbox_uids"
TOKEN_VAR = "PHI_JAX_SANDBOX_RUN"

def uid_pool_mapped() -> bool:
  """Whether UID_BASE.. is a valid uid and gid range in this (possibly nested) user namespace."""
  for name in ("uid_map", "gid_map"):
    try:
      ranges = [tuple(map(int, line.split())) for line in open(f"/proc/self/{name}")]
    except OSError:
      return False
    if not any(lo <= UID_BASE and UID_BASE + UID_POOL <= lo + n for lo, _, n in ranges):
      return False
  return True


def lease_uid() -> tuple[int, Optional[int]]:
  """(uid, lock fd): a per-run uid held with a lock file; (NOBODY, None) if the pool is unusable."""
  if not uid_pool_mapped():
    return NOBODY, None
  os.makedirs(LOCK_DIR, mode=0o700, exist_ok=True)
  st = os.lstat(LOCK_DIR)
  if not os.path.isdir(LOCK_DIR) or os.path.islink(LOCK_DIR) or st.st_uid != 0:
    raise RuntimeError(f"{LOCK_DIR} must be a directory owned by root; remove it and retry")
  start = secrets.randbelow(UID_POOL)
  for i in range(UID_POOL):
    uid = UID_BASE + (start + i) % UID_POOL
    fd = os.open(os.path.join(LOCK_DIR, str(uid)), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      return uid, fd
    except BlockingIOError:
      os.close(fd)
  raise RuntimeError(f"all {UID_POOL} sandbox uids are in use")


def procs() -> list[tuple[int, int]]:
  """(pid, real uid) of every visible process that is not a zombie."""
  out = []
  for entry in os.listdir("/proc"):
    if entry.isdigit():
      try:
        with open(f"/proc/{entry}/status") as f:
          for line in f:
            if line.startswith("State:") and line.split()[1] == "Z":
              break
            if line.startswith("Uid:"):
              out.append((int(entry), int(line.split()[1])))
              break
      except (OSError, ValueError, IndexError):
        pass
  return out


def reap_uid(uid: int, deadline_s: float = 30.0) -> None:
  """Kills every process of `uid`: `kill(-1, SIGKILL)` run as that uid is one sweep that new
  forks cannot outrun (the kernel walks the task list under a lock). Sweeps until none is left
  (a killed process takes a moment to exit, longer on a loaded machine); RuntimeError after
  `deadline_s` seconds."""
  deadline = time.monotonic() + deadline_s
  while any(u == uid for _, u in procs()):
    if time.monotonic() > deadline:
      raise RuntimeError(f"processes of sandbox uid {uid} survived {deadline_s:g} s of kill "
                         "sweeps")
    # `kill -9 -1` as that uid; it spares only itself.
    subprocess.run([shutil.which("kill") or "/bin/kill", "-9", "--", "-1"], user=uid, group=uid,
                   extra_groups=[], env={}, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def reap_token(token: str, deadline_s: float = 30.0) -> None:
  """Kills the caller's processes whose initial environment holds this run's token, until none
  is left (or `deadline_s` seconds passed: RuntimeError). A process that forks between the scan
  and the kill is found by the next scan; only processes that drop the token (a fresh exec with
  another environment) escape, which is why this level is best effort."""
  needle = f"{TOKEN_VAR}={token}".encode()
  me = os.getuid()
  deadline = time.monotonic() + deadline_s
  while True:
    found = False
    for pid, uid in procs():
      if uid != me or pid == os.getpid():
        continue
      try:
        with open(f"/proc/{pid}/environ", "rb") as f:
          if needle in f.read().split(b"\0"):
            found = True
            os.kill(pid, signal.SIGKILL)
      except OSError:
        pass
    if not found:
      return
    if time.monotonic() > deadline:
      raise RuntimeError(f"processes of sandbox run {token[:8]} survived {deadline_s:g} s of "
                         "kill sweeps")
    time.sleep(0.01)


def clean_shared_tmp(uid: int) -> None:
  """Removes what a per-run uid left in the world-writable temp dirs (level 'uid')."""
  for root in ("/tmp", "/var/tmp", "/dev/shm"):
    try:
      entries = list(os.scandir(root))
    except OSError:
      continue
    for entry in entries:
      try:
        if entry.stat(follow_symlinks=False).st_uid != uid:
          continue
        if entry.is_dir(follow_symlinks=False):
          shutil.rmtree(entry.path, ignore_errors=True)
        else:
          os.unlink(entry.path)
      except OSError:
        pass


PRIVATE_TMP = ("/tmp", "/var/tmp", "/dev/shm")  # fresh tmpfs at the namespace levels

_QUERY = r"""
import json, os, sys
maps = set()
with open('/proc/self/maps') as f:
  for line in f:
    fields = line.split(None, 5)
    if len(fields) == 6 and fields[5].startswith('/'):
      maps.add(fields[5].strip())
print(json.dumps({'prefixes': [sys.prefix, sys.exec_prefix, sys.base_prefix,
                               sys.base_exec_prefix], 'maps': sorted(maps)}))
"""


def private_ancestor(path: str) -> Optional[str]:
  """The topmost proper ancestor of `path` that other uids cannot traverse (no o+x), if any."""
  parts = pathlib.PurePosixPath(path).parts
  for i in range(1, len(parts)):
    d = str(pathlib.PurePosixPath(*parts[:i]))
    if not os.stat(d).st_mode & 0o001:
      return d
  return None


@functools.lru_cache(maxsize=None)
def interpreter_paths(python: str) -> tuple[str, ...]:
  """The directories `python` needs to start and import its standard library: its prefixes (a
  venv's and its base's), the folder of the executable, and the folders of every shared object
  it maps at startup (e.g. libpython, which a RUNPATH may load from outside the prefix). Asked
  of the interpreter itself; resolved, with folders inside other listed folders dropped."""
  run = subprocess.run([python, "-I", "-S", "-c", _QUERY], capture_output=True, text=True,
                       timeout=120, stdin=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin"},
                       check=False)
  if run.returncode != 0:
    raise RuntimeError(f"the interpreter {python} does not run (exit {run.returncode}): "
                       f"{run.stderr.strip()[-300:]}")
  info = json.loads(run.stdout.splitlines()[-1])
  wanted = {os.path.realpath(p) for p in info["prefixes"]}
  wanted |= {os.path.dirname(os.path.realpath(p)) for p in info["maps"] if os.path.exists(p)}
  wanted |= {os.path.dirname(os.path.realpath(python)), os.path.dirname(os.path.abspath(python))}
  wanted = {p for p in wanted if p != "/"}
  return tuple(sorted(p for p in wanted
                      if not any(q != p and p.startswith(q + os.sep) for q in wanted)))


def _tmp_root(path: str) -> Optional[str]:
  for root in PRIVATE_TMP:
    real = os.path.realpath(root)
    if path == real or path.startswith(real + os.sep):
      return real
  return None


def exposed(python: str, level: str = "namespaces") -> dict[str, list[str]]:
  """{anchor: [paths under it]}: what the interpreter needs that a run at `level` could not reach
  without help, grouped by the folder the launcher covers with a read-only tmpfs before it
  bind-mounts just those paths back (sandbox_init.expose):

  - paths under /tmp, /var/tmp or /dev/shm (both namespace levels), which the run's private tmpfs
    hides: anchor = the folder right under the temp dir (e.g. /tmp/tmp.x1y2 from `mktemp -d`);
  - at 'namespaces' (and for the 'uid' level's check), paths under a folder other uids cannot
    traverse (e.g. /root, mode 0700): anchor = the topmost such folder, so the per-run uid sees
    the interpreter at its own path and nothing else of that folder.
  The host's directories keep their modes: nothing is opened to other users outside the run.
  Other levels: {}.
  """
  if level not in ("namespaces", "userns", "uid"):
    return {}
  groups: dict[str, list[str]] = {}
  for path in interpreter_paths(python):
    root = _tmp_root(path) if level != "uid" else None
    if root is not None:
      if path == root:
        raise RuntimeError(f"the interpreter needs {path} itself, which the sandbox replaces "
                           "with a private tmpfs; install it elsewhere or pass python=")
      anchor = os.path.join(root, os.path.relpath(path, root).split(os.sep)[0])
    elif level in ("namespaces", "uid"):
      anchor = private_ancestor(path)
    else:
      anchor = None
    if anchor is not None:
      groups.setdefault(anchor, []).append(path)
  return groups


def unreadable(python: str) -> list[str]:
  """The interpreter's folders (and the executable) that other uids cannot read and enter
  themselves (not through a parent): no bind mount fixes those for a per-run uid."""
  paths = list(interpreter_paths(python)) + [os.path.realpath(python)]
  return [f"{p} (mode {os.stat(p).st_mode & 0o777:o})" for p in paths
          if os.stat(p).st_mode & 0o005 != 0o005]


def children(pid: int) -> list[int]:
  try:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
      return [int(p) for p in f.read().split()]
  except OSError:
    return []
