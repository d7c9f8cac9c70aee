"""Where a store lives: one value for its URL and the fsspec options that reach it.

A store is named by a local path or an fsspec URL (``s3://bucket/pool.zarr``) *and*, for a URL, the options its
filesystem needs (``endpoint_url``, ``key``, ``secret`` ...). The two only make sense together — options without
a URL are meaningless, a URL without its options opens the wrong endpoint — so they travel as one
:class:`StoreRef` instead of a ``(store, storage_options)`` pair in every signature.

Every function of :mod:`storage` that takes a store takes a :class:`StoreRef` or, as before, a URL string with
an optional ``storage_options=`` (:meth:`StoreRef.of` turns either into a ref), so callers move over one at a
time. Things kept *beside* a store — its writer lock ``<store>.lock``, its curated versions ``<store>.curated``,
its study's MLflow folder — are named by :meth:`StoreRef.beside`, so they reach the same filesystem.

This module imports nothing heavy: Zarr and fsspec are loaded by the methods that need them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


def is_local_url(url: str) -> bool:
    """A local path or a ``file://`` URL (as opposed to an object store or any other fsspec protocol)."""
    return "://" not in url or url.startswith("file://")


def local_path(url: str) -> str:
    """The filesystem path of a local store URL (``file://`` stripped)."""
    return url[len("file://"):] if url.startswith("file://") else url


@dataclass(frozen=True)
class StoreRef:
    """A store's URL (or local path) and the fsspec options that reach it.

    Attributes
    ----------
    url : str
        A local path, a ``file://`` URL, or an fsspec URL (``s3://``, ``gs://``, ``memory://`` ...).
    storage_options : mapping
        fsspec options of a URL (for S3: ``endpoint_url``, ``key``, ``secret`` ... as s3fs takes them); empty for
        a local store, which refuses them (a local path has no filesystem options, so options there are a mistake).
    """

    url: str
    storage_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.url, str) or not self.url:
            raise ValueError(f"store={self.url!r}: give a local path or an fsspec URL such as s3://bucket/pool.zarr")
        if self.storage_options is None:
            object.__setattr__(self, "storage_options", {})
        if not isinstance(self.storage_options, Mapping):
            raise ValueError(f"storage_options={self.storage_options!r}: give a mapping of fsspec options "
                             "(e.g. {'endpoint_url': 'http://...'})")
        object.__setattr__(self, "storage_options", dict(self.storage_options))
        if self.storage_options and self.is_local:
            raise ValueError("storage_options only apply to fsspec URLs (s3://...), not to a local store path")

    @classmethod
    def of(cls, store: StoreRef | str, storage_options: Mapping[str, Any] | None = None) -> StoreRef:
        """``store`` as a ref: a :class:`StoreRef` as it is, a URL string with ``storage_options``.

        Raises
        ------
        ValueError
            A ref together with different ``storage_options`` (which of the two was meant cannot be told).
        """
        if isinstance(store, StoreRef):
            if storage_options and dict(storage_options) != dict(store.storage_options):
                raise ValueError(f"store {store.url!r} is a StoreRef with its own storage_options; do not pass "
                                 "other storage_options beside it")
            return store
        return cls(store, dict(storage_options or {}))

    # ------------------------------------------------------------------ where
    @property
    def is_local(self) -> bool:
        """Whether the store is a local path (``file://`` included)."""
        return is_local_url(self.url)

    @property
    def path(self) -> str:
        """The local filesystem path (``file://`` stripped); for a remote store, its URL."""
        return local_path(self.url) if self.is_local else self.url

    @property
    def options(self) -> dict[str, Any] | None:
        """``storage_options`` as the older ``storage_options=`` arguments take them: a dict, or None when empty."""
        return dict(self.storage_options) or None

    @property
    def name(self) -> str:
        """The store's last path component without ``.zarr`` (``s3://b/pool.zarr`` → ``pool``)."""
        tail = self.url.rstrip("/").rsplit("/", 1)[-1]
        return tail[: -len(".zarr")] if tail.endswith(".zarr") else tail

    def beside(self, suffix: str) -> StoreRef:
        """A sibling of the store on the same filesystem: its URL plus ``suffix`` (``pool.zarr`` → ``pool.zarr.lock``)."""
        if not suffix:
            raise ValueError("suffix='': give the suffix of the sibling, e.g. '.lock' or '.curated'")
        return StoreRef(self.url.rstrip("/") + suffix, self.storage_options)

    def __str__(self) -> str:
        return self.url

    # ------------------------------------------------------------------ opening
    def zarr_store(self, *, read_only: bool = False):
        """The Zarr store object (:func:`storage.store.zarr_store`)."""
        from storage.store import zarr_store

        return zarr_store(self, read_only=read_only)

    def filesystem(self):
        """``(fsspec filesystem, path)`` of the store."""
        from fsspec.core import url_to_fs

        return url_to_fs(self.url, **dict(self.storage_options))

    def open(self, mode: str = "r") -> "storage.store.EmbeddingStore":  # noqa: F821 (imported when called)
        """The embedding store, read-only (``"r"``) or for writing (``"r+"``)."""
        from storage.store import EmbeddingStore

        return EmbeddingStore.open(self, mode=mode)

    def exists(self) -> bool:
        """Whether a worth embedding store exists here."""
        from storage.store import EmbeddingStore

        return EmbeddingStore.exists(self)
