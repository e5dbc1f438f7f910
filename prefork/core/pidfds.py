"""Whether this process may use pidfds (``pidfd_open(2)``, Linux 5.3).

``hasattr(os, "pidfd_open")`` says only that Python was built with it.  The call itself fails
with ENOSYS on an older kernel or under valgrind, and with EPERM or ENOSYS where a seccomp
profile (some container runtimes' defaults) does not allow it.  The master and the import probe
ask :func:`usable` once, and wait for their children another way where it says no.
"""

from __future__ import annotations

import functools
import os


@functools.cache
def usable() -> bool:
    """True if ``os.pidfd_open`` works here (tried once, on this process)."""
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        fd = os.pidfd_open(os.getpid())
    except OSError:
        return False
    os.close(fd)
    return True
