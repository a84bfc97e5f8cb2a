"""Run a command with flock() and the fcntl lock commands failing with ENOSYS, as on a Lustre `noflock` mount.

Usage: /usr/bin/python3 tests/tools/noflock.py COMMAND [ARGS...] (needs Debian's python3-seccomp). The filter is
inherited by every child, so the whole process tree sees a file system without locks.
"""

import errno
import fcntl
import os
import sys

import seccomp

F_OFD_LOCK_COMMANDS = (36, 37, 38)  # F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW (linux/fcntl.h)

lock_filter = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
lock_filter.add_rule(seccomp.ERRNO(errno.ENOSYS), "flock")
for command in (fcntl.F_GETLK, fcntl.F_SETLK, fcntl.F_SETLKW, *F_OFD_LOCK_COMMANDS):
    lock_filter.add_rule(seccomp.ERRNO(errno.ENOSYS), "fcntl", seccomp.Arg(1, seccomp.EQ, command))
lock_filter.load()
os.execvp(sys.argv[1], sys.argv[1:])
