import numpy as np
import pytest


@pytest.fixture
def seed_data():
    """The textbook example: 100 draws of Normal(2, 1) with numpy seed 42."""
    np.random.seed(42)
    return np.random.normal(2.0, 1.0, size=100)
