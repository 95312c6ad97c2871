"""Two processes importing at once into one models folder (a double-clicked Import, or the app and
the CLI together): every model keeps its own id, file and hash, and nobody fails."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import queue
from pathlib import Path

import pytest
import torch

from engine.models.tiny import build_tiny, tiny_ddpm_config

ROUNDS = 12


def _importer(barrier, jobs, results) -> None:
    """A separate process: imports each job's file as soon as the other process is ready too."""
    from engine.models import store

    for models_dir, src in iter(jobs.get, None):
        barrier.wait(timeout=60)
        try:
            done = store.import_model_file(src, models_dir=models_dir)
            results.put(("ok", done.model_id, str(done.path), done.sha256))
        except BaseException as exc:  # noqa: BLE001 - reported to the test, whatever it is
            results.put(("error", type(exc).__name__, str(exc), ""))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_two_processes_importing_namesakes_at_once_keep_both(tmp_path, monkeypatch):
    monkeypatch.delenv("RESTORER_MODEL_CATALOG", raising=False)
    sources = []
    for seed, folder in ((1, "a"), (2, "b")):  # two different files with the same name
        (tmp_path / folder).mkdir()
        torch.save(build_tiny(tiny_ddpm_config(), seed=seed).state_dict(), tmp_path / folder / "model.pt")
        sources.append(tmp_path / folder / "model.pt")
    assert sha256(sources[0]) != sha256(sources[1])

    context = multiprocessing.get_context("spawn")  # fresh interpreters: real separate processes
    barrier, results = context.Barrier(2), context.Queue()
    jobs = [context.Queue(), context.Queue()]
    workers = [context.Process(target=_importer, args=(barrier, q, results), daemon=True) for q in jobs]
    for w in workers:
        w.start()
    try:
        for n in range(ROUNDS):
            models_dir = tmp_path / f"models{n}"
            for q, src in zip(jobs, sources):
                q.put((str(models_dir), str(src)))
            outcome = [results.get(timeout=120) for _ in sources]
            errors = [o for o in outcome if o[0] != "ok"]
            assert not errors, f"round {n}: {errors}"
            ids = {o[1] for o in outcome}
            assert len(ids) == 2, f"round {n}: both imports took the id {ids}"
            registry = json.loads((models_dir / "registry.json").read_text())
            assert set(registry["custom"]) == ids, f"round {n}: a model was lost from the registry"
            recorded = {}
            for model_id in ids:
                file_name = registry["custom"][model_id]["file_name"]
                recorded[model_id] = registry["hashes"][file_name]["sha256"]
                assert sha256(models_dir / file_name) == recorded[model_id], f"round {n}: {model_id}'s hash is another's"
            assert set(recorded.values()) == {sha256(s) for s in sources}, f"round {n}"
            assert not list(models_dir.glob("*.importing*")), f"round {n}: a temporary file was left"
    finally:
        for q in jobs:
            q.put(None)
        for w in workers:
            w.join(timeout=30)
            if w.is_alive():
                w.terminate()
        try:
            while True:
                results.get_nowait()
        except queue.Empty:
            pass
