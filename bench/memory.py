"""Peak memory of this process, as the kernel counts it, for the benches' figures."""

from __future__ import annotations

import resource


def peak_rss_gb() -> float:
    """This process's own peak RSS, in GiB: VmHWM where Linux has it. Not ru_maxrss there: a child
    started by fork (or vfork) and exec carries its parent's peak in ru_maxrss (the kernel keeps the
    old image's high-water mark at exec), so a bench's child reports the bench's memory whenever that
    is larger than its own (a 3 GB parent: a fresh child's ru_maxrss says 3.0 GB)."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024 ** 2
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


# The same, as source for a script a bench runs in another interpreter (a baseline's virtualenv).
PEAK_RSS_SOURCE = '''
def peak_rss_gb():
    import resource
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024 ** 2
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
'''
