"""Best-effort in-process guard for the fallback sandbox levels (`uid`, `rlimits`).

Run as `python -s -c "$(cat sandbox_guard.py)" main.py` in the run's working directory (as source,
so the run's uid need not be able to read the checkout): installs a PEP 578 audit hook, then runs
main.py as `__main__`. The hook refuses

  - sockets (creation, connect, bind, send, name lookups): there is no network namespace here;
  - new processes and signals to other processes (fork, exec, spawn, system, subprocess, kill);
  - ctypes and _posixsubprocess (they reach libc / fork+exec without the audited wrappers);
  - writing, creating, deleting, renaming or changing files outside the working directory
    (reads stay allowed).

Audit hooks are not a security boundary (PEP 578 says so): this stops accidents and naive hostile
code, not code written to escape this guard (e.g. a race on a symlink). The namespace levels do not
use it. Standard library only.
"""

import os
import runpy
import sys

_WORKDIR = os.path.realpath(os.getcwd())
_ALLOWED_FILES = frozenset({"/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"})
_REFUSED = frozenset({
    "socket.__new__", "socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg",
    "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr", "socket.getnameinfo",
    "os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn", "os.system", "os.startfile",
    "subprocess.Popen", "pty.spawn", "ctypes.dlopen", "ctypes.dlsym", "ctypes.dlsym/handle",
    "ctypes.call_function", "ctypes.cdata", "sys.remote_exec", "os.setxattr", "os.removexattr"})
_PATH_EVENTS = {  # event -> indexes of (path, dir_fd) pairs in its arguments
    "os.remove": ((0, 1),), "os.rmdir": ((0, 1),), "os.mkdir": ((0, 2),),
    "os.rename": ((0, 2), (1, 3)), "os.link": ((0, 2), (1, 3)), "os.symlink": ((1, 2),),
    "os.truncate": ((0, None),), "os.chmod": ((0, 2),), "os.chown": ((0, 3),),
    "os.utime": ((0, 3),), "os.mkfifo": ((0, 2),), "os.mknod": ((0, 3),),
    "shutil.rmtree": ((0, 1),), "os.chflags": ((0, None),), "os.lchown": ((0, None),),
    "os.lchmod": ((0, None),)}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _inside(path, dir_fd=None) -> bool:
  if isinstance(path, int):  # an already open descriptor
    return True
  path = os.fsdecode(path)
  if dir_fd is not None and not os.path.isabs(path):
    base = os.readlink(f"/proc/self/fd/{dir_fd}")
  else:
    base = os.getcwd()
  real = os.path.realpath(os.path.join(base, path))
  return real in _ALLOWED_FILES or real == _WORKDIR or real.startswith(_WORKDIR + os.sep)


def _refuse(event: str, detail) -> None:
  raise PermissionError(f"sandbox: {event} is not allowed here ({detail!r})")


def _hook(event: str, args: tuple) -> None:
  if event in _REFUSED:
    _refuse(event, args[:2])
  if event == "import" and args[0] in ("ctypes", "_ctypes", "_posixsubprocess"):
    raise ImportError(f"sandbox: importing {args[0]} is not allowed here")
  if event == "os.killpg" or (event == "os.kill" and args[0] != os.getpid()):
    _refuse(event, args)
  if event == "object.__setattr__" and args[0] is _hook:
    _refuse(event, args[1])
  if event == "open":
    path, mode, flags = args
    writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
        isinstance(flags, int) and flags & _WRITE_FLAGS)
    if writes and path is not None and not _inside(path):
      _refuse(event, path)
  for path_i, fd_i in _PATH_EVENTS.get(event, ()):
    dir_fd = args[fd_i] if fd_i is not None and fd_i < len(args) else None
    if not _inside(args[path_i], dir_fd if isinstance(dir_fd, int) else None):
      _refuse(event, args[path_i])


def main() -> None:
  program = sys.argv[1]
  sys.argv = sys.argv[1:]
  sys.path[0] = _WORKDIR
  sys.addaudithook(_hook)
  runpy.run_path(program, run_name="__main__")


if __name__ == "__main__":
  main()
