"""Run the public reference hq_demo ``main.py`` with its sampling loop timed.

Benchmark tooling only: the reference code is fetched into an ignored folder and never committed.
Run from inside that hq_demo folder (see bench/reference_run.sh); prints
``REFERENCE_SAMPLING_SECONDS <s>`` for every ``GaussianDiffusion.p_sample_loop`` call.
"""

import os
import runpy
import sys
import time

import torch

sys.path.insert(0, os.getcwd())
from guided_diffusion import gaussian_diffusion  # noqa: E402  (the reference's own module)

_loop = gaussian_diffusion.GaussianDiffusion.p_sample_loop


def _timed(self, *args, **kwargs):
    torch.cuda.synchronize()
    start = time.perf_counter()
    out = _loop(self, *args, **kwargs)
    torch.cuda.synchronize()
    print(f"REFERENCE_SAMPLING_SECONDS {time.perf_counter() - start:.2f}", flush=True)
    return out


gaussian_diffusion.GaussianDiffusion.p_sample_loop = _timed
sys.argv = ["main.py"] + sys.argv[1:]
runpy.run_path("main.py", run_name="__main__")
