"""The sandbox's launcher: sets up one run, then forks and execs the untrusted program.

Run by `execution.py` as `python -I -S sandbox_init.py STATUS_FD` (under `unshare` for the
namespace levels), with a JSON spec on stdin:

    {"level": "namespaces" | "userns" | "uid" | "rlimits",
     "uid": int | null, "gid": int | null,   # drop to these ids (namespaces, uid)
     "workdir": str | null,                  # null: make /tmp/sandbox on a private tmpfs
     "tmpfs_mb": int, "rlimits": {"CPU": [soft, hard], ...}, "alarm_s": int,
     "expose": {anchor: [interpreter folders under it]},   # namespace levels (sandbox_procs)
     "argv": [...], "env": {...}, "program": str}

It writes JSON lines to STATUS_FD: {"event": "started", ...}, then {"event": "exit", "code",
"cpu_s", "alarm"} when the program ends (alarm: the launcher's own wall-time net killed it), or
{"event": "setup_error", "message"}.

Mount order at the namespace levels: every mount read-only; O_PATH descriptors on the interpreter
folders to expose; private tmpfs on /tmp, /var/tmp, /dev/shm (hiding anything under them); then
each folder is bind-mounted back at its own path from its descriptor (`expose`). STATUS_FD is
close-on-exec, so the program never sees it and cannot forge it.

At the namespace levels this process is PID 1 of a new PID namespace: when it exits (the program
ended) or is killed (`unshare --kill-child` forwards SIGKILL when the evaluator kills `unshare`),
the kernel kills every process left in the namespace. It never drops its own privileges, because a
credential change would clear the parent-death signal that ties it to `unshare`.

Standard library only, and no imports from phi_jax: it runs with `-I -S` for a fast start.
"""

import ctypes
import json
import os
import resource
import signal
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_MOVE = 32, 1024, 2048, 4096, 8192
MS_REC, MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 16384, 1 << 18, 1 << 21, 1 << 24
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 24, 38
_MOUNT_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": MS_NOATIME,
                "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME}
_PRIVATE_TMP = ("/tmp", "/var/tmp", "/dev/shm")

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
  if ret != 0:
    err = ctypes.get_errno()
    raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source, target, fstype, flags, data=None) -> None:
  enc = lambda s: None if s is None else s.encode()
  _check(_libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
         f"mount {target}")


def _unescape(field: str) -> str:
  """Mount points in mountinfo escape space, tab, newline and backslash as octal."""
  out, i = [], 0
  while i < len(field):
    if field[i] == "\\" and field[i + 1:i + 4].isdigit() and len(field) >= i + 4:
      out.append(chr(int(field[i + 1:i + 4], 8)))
      i += 4
    else:
      out.append(field[i])
      i += 1
  return "".join(out)


def readonly_filesystem() -> list[str]:
  """Remounts every mount of this (private) mount namespace read-only. Returns warnings for mounts
  that could not be made read-only.

  Only per-mount flags change (MS_REMOUNT | MS_BIND): the host's mounts are untouched. Flags the
  mount already has (nosuid, nodev, noexec, atime) are kept, as a user namespace requires.
  """
  _mount(None, "/", None, MS_REC | MS_PRIVATE)
  warnings = []
  with open("/proc/self/mountinfo") as f:
    entries = [line.split() for line in f]
  for fields in entries:
    point = _unescape(fields[4])
    if point == "/proc" or point.startswith("/proc/"):
      continue
    flags = MS_REMOUNT | MS_BIND | MS_RDONLY
    for opt in fields[5].split(","):
      flags |= _MOUNT_FLAGS.get(opt, 0)
    try:
      _mount(None, point, None, flags)
    except OSError as e:
      if point == "/":
        raise
      warnings.append(str(e))
  return warnings


def private_tmp(tmpfs_mb: int) -> None:
  """Fresh tmpfs on /tmp, /var/tmp and /dev/shm (whatever was there is hidden from the run)."""
  for point in _PRIVATE_TMP:
    if os.path.isdir(point):
      size = tmpfs_mb if point == "/tmp" else min(tmpfs_mb, 16)
      _mount("tmpfs", point, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size}m,mode=1777")


def open_exposed(groups: dict[str, list[str]]) -> dict[str, int]:
  """{path: O_PATH descriptor} for every path `expose` will mount. Opened before `private_tmp`,
  which hides paths under /tmp; a descriptor keeps the directory reachable (as /proc/self/fd/N)
  whatever is mounted over its path later."""
  return {path: os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
          for paths in groups.values() for path in paths}


def _makedirs(path: str, under: str) -> None:
  """Creates `path` and its missing parents below `under`, each mode 0755 whatever the umask."""
  missing = []
  while path != under and not os.path.isdir(path):
    missing.append(path)
    path = os.path.dirname(path)
  for d in reversed(missing):
    os.mkdir(d)
    os.chmod(d, 0o755)


def _flags_of(path: str) -> int:
  """The mount flags of the mount at `path` that a remount must keep (locked in a user ns)."""
  f_flag = os.statvfs(path).f_flag
  return sum(ms for st, ms in ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV),
                               (os.ST_NOEXEC, MS_NOEXEC)) if f_flag & st)


def expose(groups: dict[str, list[str]], fds: dict[str, int]) -> None:
  """Makes the interpreter's folders reachable by the run, at their own paths (a RUNPATH or a
  venv's pyvenv.cfg may name them): each anchor in `groups` (a private folder such as /root, or a
  folder under /tmp that the private tmpfs hid) gets a read-only tmpfs holding only its listed
  paths, each bind-mounted read-only from the descriptor `open_exposed` took. The rest of the
  anchor stays hidden, and nothing changes outside this mount namespace."""
  for anchor in sorted(groups):
    _makedirs(anchor, os.path.dirname(anchor))  # gone if it was under the private tmpfs
    _mount("tmpfs", anchor, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    for path in groups[anchor]:
      _makedirs(path, anchor)
      _mount(f"/proc/self/fd/{fds[path]}", path, None, MS_BIND | MS_REC)
      _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | _flags_of(path))
      if not os.statvfs(path).f_flag & os.ST_RDONLY:
        raise OSError(f"{path} is still writable after its read-only remount")
    _mount(None, anchor, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
  for fd in fds.values():
    os.close(fd)


def drop_capabilities() -> None:
  """Empties the bounding set and all capability sets, so an exec as (namespace) root gains none."""
  with open("/proc/sys/kernel/cap_last_cap") as f:
    last = int(f.read())
  for cap in range(last + 1):
    _check(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"drop capability {cap}")

  class Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

  class Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]

  data = (Data * 2)()
  _check(_libc.capset(ctypes.byref(Header(0x20080522, 0)), data), "capset")


def child(spec: dict, workdir: str, status_fd: int) -> None:
  """In the forked child: limits, identity, then exec. Never returns."""
  try:
    os.chdir(workdir)
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    for name, (soft, hard) in spec["rlimits"].items():
      resource.setrlimit(getattr(resource, "RLIMIT_" + name), (soft, hard))
    if spec["level"] == "userns":
      drop_capabilities()
    if spec["uid"] is not None:
      os.setgroups([])
      os.setresgid(spec["gid"], spec["gid"], spec["gid"])
      os.setresuid(spec["uid"], spec["uid"], spec["uid"])
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    os.execve(spec["argv"][0], spec["argv"], spec["env"])
  except BaseException as e:  # noqa: BLE001 - report anything, then leave
    try:
      os.write(status_fd, (json.dumps({"event": "setup_error",
                                       "message": f"{type(e).__name__}: {e}"}) + "\n").encode())
    finally:
      os._exit(120)


def main() -> int:
  status_fd = int(sys.argv[1])
  os.set_inheritable(status_fd, False)

  def report(**event) -> None:
    os.write(status_fd, (json.dumps(event) + "\n").encode())

  try:
    spec = json.loads(sys.stdin.buffer.read())
    warnings = []
    if spec["level"] in ("namespaces", "userns"):
      warnings = readonly_filesystem()
      fds = open_exposed(spec["expose"])  # before the private tmpfs hides what is under /tmp
      private_tmp(spec["tmpfs_mb"])
      expose(spec["expose"], fds)
    workdir = spec["workdir"] or "/tmp/sandbox"
    if spec["workdir"] is None:
      os.mkdir(workdir, 0o700)
      if spec["uid"] is not None:
        os.chown(workdir, spec["uid"], spec["gid"])
    path = os.path.join(workdir, "main.py")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      f.write(spec["program"])
  except BaseException as e:  # noqa: BLE001
    report(event="setup_error", message=f"{type(e).__name__}: {e}")
    return 120
  pid = os.fork()
  if pid == 0:
    child(spec, workdir, status_fd)
  report(event="started", pid=os.getpid(), warnings=warnings)

  alarmed = []

  def on_alarm(signum, frame) -> None:
    """The evaluator enforces the wall limit; this is the net if the evaluator itself is gone
    (or starved)."""
    alarmed.append(True)
    os.kill(pid, signal.SIGKILL)
    if spec["level"] == "uid" and os.fork() == 0:  # kill(-1) as the run's uid: all its processes
      try:
        os.setresuid(spec["uid"], spec["uid"], spec["uid"])
        os.kill(-1, signal.SIGKILL)
      finally:
        os._exit(0)

  signal.signal(signal.SIGALRM, on_alarm)
  signal.alarm(int(spec["alarm_s"]))
  _, status, usage = os.wait4(pid, 0)
  signal.alarm(0)
  report(event="exit", code=os.waitstatus_to_exitcode(status),
         cpu_s=usage.ru_utime + usage.ru_stime, maxrss_kb=usage.ru_maxrss, alarm=bool(alarmed))
  return 0


if __name__ == "__main__":
  sys.exit(main())
