import logging
import warnings

import pytest

try:  # torch is optional: the GPU stage-2 tests run in a TensorRT interpreter without it (trtpy)
    import torch
except ImportError:
    torch = None

if torch is not None:
    from dynconv.plugins import load_ops

    load_ops()


@pytest.fixture(autouse=True)
def _deterministic():
    if torch is not None:
        torch.manual_seed(0)
    yield


def pytest_configure(config):
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
