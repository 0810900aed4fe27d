"""Atomic model save (recommender/storage.py): a process killed between any two steps of a save leaves
the old model or the new one loading — never new arrays with old metadata, or the reverse."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recommender.storage import model_files, read_model, write_model

from .conftest import ROOT

#: the child saves "old" completely, then "new", and SIGKILLs itself at the named step of the second save
_SAVER = """
import os, signal, sys
import numpy as np
from recommender import storage

path, kill_at = sys.argv[1], sys.argv[2]
storage.write_model(path, {"ids": np.arange(3)}, {"generation": "old", "n": 3})
real_replace = os.replace
calls = []

def replace(src, dst):
    if kill_at == "before-npz" and not calls:
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst)
    calls.append(dst)
    if kill_at == "between" and len(calls) == 1:
        os.kill(os.getpid(), signal.SIGKILL)

storage.os.replace = replace
storage.write_model(path, {"ids": np.arange(5)}, {"generation": "new", "n": 5})
print("saved")
"""


@pytest.mark.parametrize(
    ("kill_at", "expected"), [("before-npz", "old"), ("between", "new"), ("never", "new")]
)
def test_a_kill_during_save_loads_the_old_or_the_new_model_whole(
    tmp_path: Path, kill_at: str, expected: str
) -> None:
    path = tmp_path / "model" / "m"
    child = subprocess.run(
        [sys.executable, "-c", _SAVER, str(path), kill_at],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    killed = kill_at != "never"
    assert child.returncode == (-signal.SIGKILL if killed else 0), child.stderr
    arrays, meta = read_model(path)
    assert meta["generation"] == expected
    assert len(arrays["ids"]) == meta["n"]  # arrays and metadata from the same save
    assert "__metadata__" not in arrays


def test_a_model_saved_before_the_manifest_still_loads_from_its_json(tmp_path: Path) -> None:
    path = tmp_path / "old"
    write_model(path, {"ids": np.arange(2)}, {"n": 2})
    npz, _ = model_files(path)
    with np.load(npz, allow_pickle=False) as data:
        plain = {k: data[k] for k in data.files if k != "__metadata__"}
    np.savez(npz, **plain)  # as written by earlier versions: arrays only
    arrays, meta = read_model(path)
    assert meta["n"] == 2 and len(arrays["ids"]) == 2
