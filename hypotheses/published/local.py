"""Find a published model's files on this machine, never downloading them.

A :class:`LocalWeights` names a Hugging Face repository, the files a loader needs from it and the
environment variable that may point at a local copy. :meth:`LocalWeights.locate` looks, in order,
at an explicit path, the environment variable, then the local Hugging Face cache
(``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``), read at call time.
It only lists directories: no hub client is called, so nothing is ever downloaded. When nothing
is found it raises :class:`WeightsUnavailable`, whose message says what to download and where.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["WeightsUnavailable", "LocalWeights", "hub_cache"]


class WeightsUnavailable(FileNotFoundError):
    """A published model's weights (or tokenizer) are not on this machine; the message says what to get."""


def hub_cache() -> Path:
    """The Hugging Face hub cache directory as the environment names it now."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


@dataclass(frozen=True)
class LocalWeights:
    """What a loader needs from a published model, and where a user's copy may be.

    Attributes:
        title: the model's name for messages, e.g. ``"GPT-2 small"``.
        repo_ids: Hugging Face repositories holding it, the canonical one first (others are older
            names whose cache folders are also searched).
        required: file-name groups; each group is a tuple of glob patterns of which one must match
            a file in the folder (``(("config.json",), ("model.safetensors", "pytorch_model.bin"))``).
        env_var: the environment variable that may name a local folder.
        files: the files to fetch, in words (``"config.json, model.safetensors, ..."``).
        download: the same as arguments to ``hf download`` after the repo id.
    """

    title: str
    repo_ids: tuple[str, ...]
    required: tuple[tuple[str, ...], ...]
    env_var: str
    files: str
    download: str

    def missing(self, folder: Path) -> list[str]:
        """The required groups with no matching file in ``folder`` (each as ``"a or b"``)."""
        try:
            names = [p.name for p in folder.iterdir()]
        except OSError:
            names = []
        return [" or ".join(g) for g in self.required if not any(fnmatch.filter(names, pat) for pat in g)]

    def candidates(self, path: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
        """Where to look, in order: ``(how it was found, folder)``."""
        if path is not None:
            return [("path argument", Path(path).expanduser())]
        out: list[tuple[str, Path]] = []
        if os.environ.get(self.env_var):
            out.append((f"${self.env_var}", Path(os.environ[self.env_var]).expanduser()))
        cache = hub_cache()
        for repo in self.repo_ids:
            root = cache / ("models--" + repo.replace("/", "--"))
            snapshots = root / "snapshots"
            ref = root / "refs" / "main"
            ordered: list[Path] = []
            if ref.is_file():
                ordered.append(snapshots / ref.read_text().strip())
            if snapshots.is_dir():
                ordered += sorted(p for p in snapshots.iterdir() if p.is_dir() and p not in ordered)
            out += [(f"Hugging Face cache ({repo})", p) for p in ordered] or [(f"Hugging Face cache ({repo})", root)]
        return out

    def locate(self, path: str | os.PathLike | None = None) -> Path:
        """The first folder holding every required file; :class:`WeightsUnavailable` when there is none.

        An explicit ``path`` is the only place looked at (a wrong path is an error, not a fallback).
        """
        tried: list[str] = []
        for how, folder in self.candidates(path):
            gaps = self.missing(folder)
            if not gaps:
                return folder
            state = "does not exist" if not folder.exists() else "lacks " + "; ".join(gaps)
            tried.append(f"{how}: {folder} {state}")
        raise WeightsUnavailable(self.message(tried))

    def message(self, tried: list[str]) -> str:
        """What was looked at, and exactly what to download and where to put it."""
        repo = self.repo_ids[0]
        looked = "\n".join(f"  - {t}" for t in tried) or "  - nowhere"
        return (
            f"{self.title} weights are not available locally (scrub never downloads them). Looked at:\n{looked}\n"
            f"To use them, download from the Hugging Face repo {repo!r} the files: {self.files}\n"
            f"  e.g. on a machine with network: hf download {repo} {self.download} --local-dir /path/to/{repo.split('/')[-1]}\n"
            f"then point scrub at that folder: export {self.env_var}=/path/to/{repo.split('/')[-1]} "
            f"(or pass load_model(path=...)); a copy in the Hugging Face cache ({hub_cache()}) is found as well."
        )
