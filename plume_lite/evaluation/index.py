"""Embedding cache and a small cosine index, shared by the evaluator and the demo.

Embeddings are cached on disk keyed by a content hash of (checkpoint id, mode, steps,
item): one folder per (checkpoint, mode, steps) setting, holding shards of
{"keys": [item digest], "emb": [n, D] float32}. Each shard is written atomically as
soon as its chunk is encoded, so an interrupted encode of a big candidate pool
resumes at the last finished shard. Files are hashed by path + size + mtime, not
by their bytes: cheap for videos and PDFs, and an edited file still misses.
"""

from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path

import torch

from plume_lite.config import MODES
from plume_lite.errors import InputError
from plume_lite.io import atomic_write_bytes
from plume_lite.items import content_hash, item_digest

log = logging.getLogger(__name__)


def checkpoint_fingerprint(path) -> str:
    """Cheap id of a checkpoint folder: names, sizes and mtimes of its files."""
    root = Path(path).resolve()
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return content_hash(
        [str(root)] + [[str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    )[:16]


def model_id(model, checkpoint_id: str | None = None) -> str | None:
    """Id that names the weights in cache keys: explicit, `model.checkpoint_id`,
    or a hash of the parameters of an nn.Module; None if none can be had."""
    if checkpoint_id is not None:
        return str(checkpoint_id)
    if getattr(model, "checkpoint_id", None):
        return str(model.checkpoint_id)
    if isinstance(model, torch.nn.Module):
        h = hashlib.sha256()
        for name, t in sorted(model.state_dict().items()):
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
            # raw bytes in the native dtype (bf16 has no numpy type; no float32 copy)
            h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        return "params-" + h.hexdigest()[:16]
    return None


def setting_key(mid: str | None, mode: str, steps: int | None) -> str:
    return content_hash({"model": mid, "mode": mode, "steps": steps})[:16]


def _read_shard(path: Path) -> dict | None:
    """A shard's {"keys", "emb"}, or None when it is damaged: it is then removed, and
    its rows are encoded again (a torn or edited shard must not stop every rerun)."""
    try:
        data = torch.load(path, mmap=True, weights_only=True)
        keys, emb = data["keys"], data["emb"]
        if (
            isinstance(keys, list)
            and all(isinstance(k, str) for k in keys)
            and torch.is_tensor(emb)
            and emb.ndim == 2
            and emb.shape[0] == len(keys)
        ):
            return data
    except Exception:  # zip, pickle-whitelist or storage errors of a damaged file
        pass
    log.warning("%s: damaged embedding-cache shard, removed; its rows will be encoded again", path)
    path.unlink(missing_ok=True)
    return None


class EmbeddingCache:
    """Encode items with one (model, mode, steps) setting, each distinct item once.

    Without `cache_dir` (or without a model id) rows live only in this object."""

    def __init__(
        self,
        model,
        mode="latent",
        steps=None,
        batch_size=16,
        cache_dir=None,
        checkpoint_id=None,
        shard_size=512,
    ):
        if mode not in MODES:
            raise InputError(f"mode must be one of {MODES}, got {mode!r}")
        self.model, self.mode, self.steps = model, mode, steps
        self.batch_size, self.shard_size = batch_size, shard_size
        self.model_id = model_id(model, checkpoint_id)
        self.memory: dict[str, torch.Tensor] = {}
        self.dir = None
        if cache_dir is not None and self.model_id is not None:
            self.dir = Path(cache_dir) / setting_key(self.model_id, mode, steps)
            self._load_index()
        self.n_encoded = 0  # items actually sent to the model (tests and logs)

    def _load_index(self):
        # key -> (shard path, row); tensors stay memory-mapped until a row is asked for
        self.on_disk: dict[str, tuple[Path, int]] = {}
        self._shards: dict[Path, torch.Tensor] = {}
        for shard in sorted(self.dir.glob("shard-*.pt")) if self.dir.exists() else []:
            data = _read_shard(shard)
            if data is None:
                continue
            self._shards[shard] = data["emb"]
            for row, key in enumerate(data["keys"]):
                self.on_disk.setdefault(key, (shard, row))

    def _lookup(self, key):
        if key in self.memory:
            return self.memory[key]
        if self.dir is not None and key in self.on_disk:
            shard, row = self.on_disk[key]
            return self._shards[shard][row]
        return None

    def _store(self, keys, emb):
        if self.dir is None:
            self.memory.update(zip(keys, emb))
            return
        buf = io.BytesIO()
        torch.save({"keys": keys, "emb": emb.contiguous()}, buf)
        shard = self.dir / f"shard-{content_hash(keys)[:20]}.pt"
        atomic_write_bytes(shard, buf.getvalue())
        self._shards[shard] = emb
        for row, key in enumerate(keys):
            self.on_disk.setdefault(key, (shard, row))

    def encode(self, items, progress=False) -> torch.Tensor:
        """[N, D] float32 embeddings of `items`, from cache where possible."""
        keys = [item_digest(it) for it in items]
        todo, seen = [], set()
        for key, item in zip(keys, items):
            if key not in seen and self._lookup(key) is None:
                seen.add(key)
                todo.append((key, item))
        for start in range(0, len(todo), self.shard_size):
            chunk = todo[start : start + self.shard_size]
            emb = self.model.encode(
                [it for _, it in chunk],
                mode=self.mode,
                steps=self.steps,
                batch_size=self.batch_size,
                progress=progress,
            )
            emb = torch.as_tensor(emb).detach().to("cpu", torch.float32)
            if emb.ndim != 2 or emb.shape[0] != len(chunk):
                raise RuntimeError(f"encode returned shape {tuple(emb.shape)} for {len(chunk)} items")
            if not torch.isfinite(emb).all():  # fail here, not as a silently wrong score
                raise RuntimeError(f"encode returned non-finite embeddings (mode={self.mode})")
            self.n_encoded += len(chunk)
            self._store([k for k, _ in chunk], emb)
        if not keys:
            return torch.zeros(0, 0)
        return torch.stack([self._lookup(k) for k in keys]).to(torch.float32)


def top_k(scores: torch.Tensor, k: int, mask: torch.Tensor | None = None):
    """(values, indices) of the k best per row; ties keep index order (stable), and
    masked-out entries never appear ahead of valid ones."""
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    k = min(k, scores.shape[-1])
    vals, idx = torch.sort(scores, dim=-1, descending=True, stable=True)
    return vals[..., :k], idx[..., :k]


class EmbeddingIndex:
    """Embed a list of candidate items once; search it by cosine similarity.

    The candidates given at construction, and any appended later with `add(items)`,
    are embedded through an EmbeddingCache (each distinct item encoded once; on disk
    with `cache_dir`). `model.encode` returns L2-normalised rows, so a dot product is
    the cosine. `search(queries, k)` embeds the queries with the same setting (or takes
    their embeddings) and returns the top-k candidates per query, ties in candidate
    order; an empty index returns [Q, 0] results.

    Args:
        model: a PlumeModel, or anything with `.encode(items, mode=, steps=,
            batch_size=, progress=)` returning [N, D] L2-normalised rows.
        items: the first candidate items (any iterable of item dicts; default none).
        mode: "latent", "explicit" or "direct", for candidates and queries alike.
        steps: latent steps K; None: the model's own.
        batch_size: items per `encode` call.
        cache_dir: folder of the on-disk embedding cache; None: in memory only.
        checkpoint_id: a name for the weights in cache keys; None: `model.checkpoint_id`
            or a hash of an nn.Module's parameters (without any, no disk cache).
        progress: show the encoder's progress bar while embedding the candidates.

    Attributes:
        items (list): the candidates, in the order that search indices refer to.
        embeddings (torch.Tensor): [len(items), D] float32 on the CPU ([0, 0] while empty).
        cache (EmbeddingCache): the cache that embedded them (and embeds queries).

    Raises:
        InputError: an unknown mode, or a malformed item (from `model.encode`).
        RuntimeError: `encode` returned the wrong shape or non-finite values.

    Example:
        >>> from plume_lite.evaluation import EmbeddingIndex
        >>> corpus = [{"text": "a red circle"}, {"text": "two blue squares"}, {"text": "a green star"}]
        >>> index = EmbeddingIndex(model, corpus, mode="latent")
        >>> len(index), index.embeddings.shape
        (3, torch.Size([3, 128]))
        >>> scores, indices = index.search([{"text": "a red circle"}], k=2)
        >>> scores.shape, indices[0, 0].item()        # the identical candidate ranks first
        (torch.Size([1, 2]), 0)
    """

    def __init__(
        self,
        model,
        items=(),
        mode="latent",
        steps=None,
        batch_size=16,
        cache_dir=None,
        checkpoint_id=None,
        progress=False,
    ):
        self.cache = EmbeddingCache(model, mode, steps, batch_size, cache_dir, checkpoint_id)
        self.items: list = []
        self.embeddings = torch.zeros(0, 0)
        self.add(items, progress=progress)

    def add(self, items, progress=False) -> None:
        """Embed `items` and append them: their search indices follow the rows already
        there. Items are kept as given (a repeat gets a row of its own, but is encoded
        only once, by the cache)."""
        items = list(items)
        if not items:
            return
        emb = self.cache.encode(items, progress=progress)
        self.items.extend(items)  # before the rows: a reader never sees a row without its item
        self.embeddings = torch.cat([self.embeddings, emb]) if len(self.embeddings) else emb

    def __len__(self):
        return len(self.items)

    def search(self, queries, k=5):
        """Top-k candidates for `queries` (a list of items or an [Q, D] tensor):
        returns (scores [Q, k], indices [Q, k]) into `self.items`."""
        q = queries if isinstance(queries, torch.Tensor) else self.cache.encode(list(queries))
        if q.ndim == 1:
            q = q[None]
        q = q.to("cpu", torch.float32)
        if not len(self.embeddings):  # nothing to rank yet
            return q[:, :0], torch.zeros(q.shape[0], 0, dtype=torch.long)
        return top_k(q @ self.embeddings.T, k)
