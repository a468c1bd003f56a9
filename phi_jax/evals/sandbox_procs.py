"""The sandbox's host-side process and identity management: per-run uids (leased with lock
files), killing every process of a run, and the paths an interpreter needs that a sandbox uid
cannot reach. Used by execution.py; standard library only."""

from __future__ import annotations

import fcntl
import os
import pathlib
import secrets
import shutil
import signal
import subprocess
import sys
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


def reap_uid(uid: int) -> None:
  """Kills every process of `uid`: `kill(-1, SIGKILL)` run as that uid is one sweep that new
  forks cannot outrun (the kernel walks the task list under a lock)."""
  for _ in range(50):
    if not any(u == uid for _, u in procs()):
      return
    # `kill -9 -1` as that uid; it spares only itself.
    subprocess.run([shutil.which("kill") or "/bin/kill", "-9", "--", "-1"], user=uid, group=uid,
                   extra_groups=[], env={}, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
  raise RuntimeError(f"processes of sandbox uid {uid} survived 50 kill sweeps")


def reap_token(token: str) -> None:
  """Kills the caller's processes whose initial environment holds this run's token."""
  needle = f"{TOKEN_VAR}={token}".encode()
  me = os.getuid()
  for _ in range(50):
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


def private_ancestor(path: str) -> Optional[str]:
  """The topmost proper ancestor of `path` that other uids cannot traverse (no o+x), if any."""
  parts = pathlib.PurePosixPath(path).parts
  for i in range(1, len(parts)):
    d = str(pathlib.PurePosixPath(*parts[:i]))
    if not os.stat(d).st_mode & 0o001:
      return d
  return None


def exposed(python: str) -> dict[str, list[str]]:
  """{private ancestor: [paths]}: what the interpreter needs that a sandbox uid cannot reach."""
  if os.path.realpath(python) == os.path.realpath(sys.executable):
    wanted = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
  else:
    wanted = {os.path.dirname(os.path.dirname(python))}
  wanted = {os.path.realpath(p) for p in wanted}
  wanted |= {os.path.dirname(os.path.realpath(python))}
  # Drop paths inside other wanted paths.
  wanted = {p for p in wanted if not any(q != p and p.startswith(q + os.sep) for q in wanted)}
  groups: dict[str, list[str]] = {}
  for p in sorted(wanted):
    ancestor = private_ancestor(p)
    if ancestor is not None:
      groups.setdefault(ancestor, []).append(p)
  return groups


def children(pid: int) -> list[int]:
  try:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
      return [int(p) for p in f.read().split()]
  except OSError:
    return []
