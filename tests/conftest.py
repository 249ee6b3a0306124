import signal

import numpy as np
import pytest

# The Ctrl-C tests send SIGINT to this process. A shell that starts a job in the background without
# job control (`cmd &` in a script, nohup) starts it with SIGINT ignored, and Python then keeps it
# ignored: the signal would be lost and a fit of 10**7 steps would run to its end. Python's own
# handler makes the tests mean the same wherever the suite is started.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def seed_data():
    """The textbook example: 100 draws of Normal(2, 1) with numpy seed 42."""
    np.random.seed(42)
    return np.random.normal(2.0, 1.0, size=100)
