"""``python -m engine models ...`` end to end against a local HTTP server."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from engine.cli import main
from engine.models import catalog as cat

REPO = Path(__file__).resolve().parents[1]



class QuietFileHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Local server with two files; a catalog whose 'pair' model needs 'clf'."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "pair.pt").write_bytes(os.urandom(150_000))
    (root / "clf.pt").write_bytes(os.urandom(40_000))
    handler = functools.partial(QuietFileHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"

    def entry(mid, file_name, **extra):
        raw = {"id": mid, "display_name": mid.upper(), "purpose": "general photos", "file_name": file_name,
               "architecture": "adm", "urls": [f"http://unreachable.invalid/{file_name}"], "sha256": None,
               "hash_policy": "record-on-first-download"}
        raw.update(extra)
        return raw

    catalog = tmp_path / "models.json"
    catalog.write_text(json.dumps({"models": [
        entry("pair", "pair.pt", companions=["clf"], recommended=True, size_bytes=150_000, size_exact=True),
        entry("clf", "clf.pt", sha256=hashlib.sha256((root / "clf.pt").read_bytes()).hexdigest(),
              hash_policy="pinned"),
        entry("broken", "broken.pt", urls=[f"{base}/nothing-here.pt"]),
    ]}))
    monkeypatch.setenv("RESTORER_MODEL_CATALOG", str(catalog))
    monkeypatch.delenv("RESTORER_MODEL_MIRROR", raising=False)
    cat.set_models_dir(None)
    yield tmp_path / "models", base, root
    httpd.shutdown()
    httpd.server_close()


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_download_with_mirror_companions_list_verify_remove(env, capsys):
    models, base, root = env
    code, out, err = run(capsys, "models", "download", "pair", "--models-dir", str(models), "--mirror", base + "/")
    assert code == 0, err
    assert (models / "pair.pt").read_bytes() == (root / "pair.pt").read_bytes()
    assert (models / "clf.pt").read_bytes() == (root / "clf.pt").read_bytes()  # companion came too
    assert "pair: installed" in out and "clf: installed" in out
    assert "pair.pt" in err and "B/s" in err  # tqdm bar on stderr

    code, out, _ = run(capsys, "models", "list", "--models-dir", str(models), "--json")
    listed = {m["id"]: m["status"] for m in json.loads(out)}
    assert listed == {"pair": "installed", "clf": "installed", "broken": "missing"}

    code, out, _ = run(capsys, "models", "verify", "--models-dir", str(models))
    assert code == 0 and "pair: ok" in out and "clf: ok" in out

    (models / "pair.pt").write_bytes(b"\0" * 150_000)  # same size, other bytes
    code, out, err = run(capsys, "models", "verify", "pair", "--models-dir", str(models))
    assert code == 2 and "pair: mismatch" in out and "--repair" in err and len(err.strip().splitlines()) == 1

    code, out, err = run(capsys, "models", "verify", "--repair", "--models-dir", str(models), "--mirror", base + "/")
    assert code == 0, err
    assert "pair: repaired" in out and (models / "pair.pt").read_bytes() == (root / "pair.pt").read_bytes()

    code, out, _ = run(capsys, "models", "path", "pair", "--models-dir", str(models))
    assert out.strip() == str(models / "pair.pt")
    code, out, _ = run(capsys, "models", "remove", "clf", "--models-dir", str(models))
    assert code == 0 and not (models / "clf.pt").exists()


def test_errors_are_one_line_with_exit_code_2(env, capsys):
    models, base, _ = env
    cases = [
        (["models", "download", "broken"], "not found"),
        (["models", "download", "nope"], "unknown model 'nope'"),
        (["models", "path", "pair"], "not installed — run `python -m engine models download pair`"),
        (["models", "import", str(models.parent / "missing.pt")], "model file not found"),
    ]
    for argv, message in cases:
        code, _, err = run(capsys, *argv, "--models-dir", str(models))
        assert code == 2, argv
        assert message in err and len(err.strip().splitlines()) == 1, err
    with pytest.raises(SystemExit) as info:
        main(["models", "frobnicate"])
    assert info.value.code == 2


def test_ctrl_c_keeps_the_partial_download_and_download_or_repair_resumes_it(env, capsys, monkeypatch):
    import engine.cli.models as cli_models
    from engine.models import download as dl
    from tests.test_download import FakeModelServer  # answers Range requests, and records them

    models, _, root = env
    data = (root / "pair.pt").read_bytes()
    server = FakeModelServer()
    server.files["pair.pt"] = data
    show = cli_models._TqdmProgress.__call__

    def ctrl_c_midway(bar, progress):
        show(bar, progress)
        if 0 < progress.done < len(data):
            raise KeyboardInterrupt

    monkeypatch.setattr(dl, "PROGRESS_INTERVAL", 0.0)
    monkeypatch.setattr(cli_models._TqdmProgress, "__call__", ctrl_c_midway)
    argv = ["models", "download", "pair", "--no-companions", "--models-dir", str(models), "--mirror", server.url("")]
    try:
        code, _, err = run(capsys, *argv)
        part = models / "pair.pt.part"
        assert code == 130 and part.is_file() and 0 < part.stat().st_size < len(data)
        assert f"pair: 0.1 MB in {part}" in err and "run the same command again to resume it" in err
        first = part.stat().st_size
        repair = ["models", "verify", "pair", "--repair", "--models-dir", str(models), "--mirror", server.url("")]
        code, _, err = run(capsys, *repair)  # resumes, and is interrupted again
        kept = part.stat().st_size
        assert code == 130 and kept > first and "run the same command again to resume it" in err
        assert server.served[-1].range_header == f"bytes={first}-"
        monkeypatch.setattr(cli_models._TqdmProgress, "__call__", show)
        code, out, err = run(capsys, *argv)
        assert code == 0 and "pair: installed" in out, err
        assert (models / "pair.pt").read_bytes() == data and not part.exists()
        assert server.served[-1].range_header == f"bytes={kept}-" and server.served[-1].nbytes == len(data) - kept
    finally:
        server.close()


def test_import_and_list_in_a_subprocess(env, tmp_path):
    from engine.models.tiny import build_tiny, tiny_ddpm_config

    models, _, _ = env
    ckpt = tmp_path / "my_faces.pt"
    torch.save(build_tiny(tiny_ddpm_config()).state_dict(), ckpt)
    envvars = dict(os.environ, RESTORER_MODELS_DIR=str(models))
    proc = subprocess.run([sys.executable, "-m", "engine", "models", "import", str(ckpt), "--name", "My faces",
                           "--purpose", "faces"], cwd=REPO, env=envvars, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "ddpm" in proc.stdout and "custom model 'my_faces'" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "engine", "models", "list"], cwd=REPO, env=envvars,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "my_faces" in proc.stdout and "My faces" in proc.stdout


def test_import_twice_says_already_installed_and_a_namesake_gets_its_own_id(env, tmp_path, capsys):
    from engine.models.tiny import build_tiny, tiny_adm_config, tiny_ddpm_config

    models, _, _ = env
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    torch.save(build_tiny(tiny_adm_config()).state_dict(), tmp_path / "a" / "model.pt")
    torch.save(build_tiny(tiny_ddpm_config()).state_dict(), tmp_path / "b" / "model.pt")
    code, out, err = run(capsys, "models", "import", str(tmp_path / "a" / "model.pt"), "--models-dir", str(models))
    assert code == 0 and "custom model 'model'" in out, err
    code, out, err = run(capsys, "models", "import", str(tmp_path / "a" / "model.pt"), "--models-dir", str(models))
    assert code == 0 and err == "" and out.strip() == f"model.pt is already installed as model 'model' ({models / 'model.pt'})"
    code, out, err = run(capsys, "models", "import", str(tmp_path / "b" / "model.pt"), "--models-dir", str(models))
    assert code == 0 and "ddpm checkpoint as custom model 'model-2'" in out, err


@pytest.mark.parametrize("argv, commands", [([], "{restore,models,"), (["models"], "{list,download,")])
def test_a_missing_command_is_named_by_its_choices(capsys, argv, commands):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and f"required: {commands}" in err and "command" not in err.split("error:")[1]
