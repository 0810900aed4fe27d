"""Model files: ``<path>.npz`` (arrays, loaded with ``allow_pickle=False``) + ``<path>.json`` (metadata).

The JSON holds the format name and version, the model parameters, the recency half-life, the data's
"now", and whatever the caller adds (data fingerprint, train cutoff, metrics). Both files are written to
temporary names and renamed, so a crash never leaves half a model behind.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from recommender.errors import ModelFileError

FORMAT = "retain-recommender"
VERSION = 1


class ModelFileMissing(ModelFileError, FileNotFoundError):
    """No model at the given path."""


def model_files(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    base = Path(path)
    if base.suffix in {".npz", ".json"}:
        base = base.with_suffix("")
    return base.with_name(base.name + ".npz"), base.with_name(base.name + ".json")


def write_model(
    path: str | os.PathLike[str], arrays: dict[str, np.ndarray], metadata: dict[str, Any]
) -> Path:
    npz, meta = model_files(path)
    npz.parent.mkdir(parents=True, exist_ok=True)
    tmp_npz, tmp_meta = npz.with_name(npz.name + ".tmp"), meta.with_name(meta.name + ".tmp")
    with open(tmp_npz, "wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]  # numpy stubs type **kwds as allow_pickle
    payload = {"format": FORMAT, "version": VERSION, **metadata}
    tmp_meta.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str), encoding="utf-8")
    os.replace(tmp_npz, npz)
    os.replace(tmp_meta, meta)
    return npz


def read_model(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Arrays and metadata; ModelFileMissing when absent, ModelFileError when unreadable."""
    npz, meta = model_files(path)
    if not npz.exists() or not meta.exists():
        raise ModelFileMissing(f"no model at {npz.with_suffix('')} (.npz + .json)")
    try:
        metadata = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{meta}: model metadata is corrupt ({exc})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ModelFileError(f"{meta}: not a Retain model file")
    if metadata.get("version") != VERSION:
        raise ModelFileError(
            f"{meta}: model format version {metadata.get('version')} is not {VERSION}: retrain"
        )
    try:
        with np.load(npz, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise ModelFileError(f"{npz}: model arrays are corrupt ({exc})") from None
    return arrays, metadata
