"""Shared test setup.

The engine tests use tiny tensors, so thread hand-offs cost more than the arithmetic: run torch
single-threaded (it also keeps timings steady on the shared 2-core CI machine).
"""

import torch

torch.set_num_threads(1)

from tests.cli_restore_helpers import fake  # noqa: E402,F401 - the fake-pipeline fixture of the CLI tests
