import signal
from pathlib import Path

import numpy as np
import pytest

# The Ctrl-C tests send SIGINT to this process. A shell that starts a job in the background without
# job control (`cmd &` in a script, nohup) starts it with SIGINT ignored, and Python then keeps it
# ignored: the signal would be lost and a fit of 10**7 steps would run to its end. Python's own
# handler makes the tests mean the same wherever the suite is started.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def cpu_flags():
    """The CPU flags the Linux kernel reports in /proc/cpuinfo (those the CPU and the OS support),
    or None where there is no such file."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


@pytest.fixture
def seed_data():
    """The textbook example: 100 draws of Normal(2, 1) with numpy seed 42."""
    np.random.seed(42)
    return np.random.normal(2.0, 1.0, size=100)


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of 2 worker processes (one thread each), as issue 13 asks of the Dask tests
    (test_fit_many, test_fit_sharded), one per test module. Its client is not the default one:
    fit_many and fit_sharded must use the client they are given."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", scheduler_kwargs={"dashboard": False}
    ) as cluster:
        with distributed.Client(cluster, set_as_default=False) as c:
            yield c
