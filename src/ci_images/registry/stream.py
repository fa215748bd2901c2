"""Blobs as streams: chunks read from a registry (checked against their digest as they pass) or from memory or a
file, and the upload body that sends them with a Content-Length without holding the blob whole."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import requests

from ci_images.errors import CiImagesError, RegistryError
from ci_images.log import redact
from ci_images.oci import digest_of

CHUNK = 1 << 20  # streamed blobs move in 1 MiB pieces: never whole in memory, few Python round trips
# Opens a blob's bytes from the start, as an iterable of chunks; called again for every upload attempt.
BlobSource = Callable[[], AbstractContextManager[Iterable[bytes]]]


class SourceInterrupted(Exception):
    """Reading an upload's source failed part-way (a dropped upstream connection, a short read): start over."""


class SizedChunks:
    """An upload body of known size made of chunks: requests sends Content-Length from ``len()`` and urllib3 writes
    each chunk as it arrives, so a blob streams from its source to the registry without being held whole."""

    def __init__(self, chunks: Iterable[bytes], size: int) -> None:
        self._chunks = chunks
        self._size = size

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        try:
            for chunk in self._chunks:
                sent += len(chunk)
                yield chunk
        except (SourceInterrupted, CiImagesError):
            raise  # already said what happened (a blob with another digest is not worth reading again)
        except Exception as exc:  # the source's own failure, whatever its library calls it
            raise SourceInterrupted(f"{type(exc).__name__}: {redact(str(exc))}") from exc
        if sent != self._size:
            raise SourceInterrupted(f"source gave {sent} bytes, expected {self._size}")


@contextmanager
def local_chunks(data: bytes | Path) -> Iterator[Iterable[bytes]]:
    """A blob in memory or in a file, as a BlobSource opens it."""
    if isinstance(data, bytes):
        yield (data[i : i + CHUNK] for i in range(0, len(data), CHUNK)) if data else iter([b""])
        return
    with data.open("rb") as fh:
        yield iter(lambda: fh.read(CHUNK), b"")


def checked_chunks(chunks: Iterable[bytes], where: str, digest: str, size: int | None) -> Iterator[bytes]:
    """Pass ``chunks`` on while hashing them; at the end the bytes must have ``digest`` (and ``size``).

    A connection that breaks mid-blob, or a stream that ends early, raises SourceInterrupted (the caller can start
    over); bytes with another digest raise RegistryError.
    """
    sha = hashlib.sha256()
    received = 0
    try:
        for chunk in chunks:
            sha.update(chunk)
            received += len(chunk)
            yield chunk
    except (requests.RequestException, OSError, ValueError) as exc:
        # urllib3's ProtocolError / IncompleteRead and socket errors: the connection broke mid-blob.
        raise SourceInterrupted(
            f"{where}: blob {digest} broke off after {received} bytes: {type(exc).__name__}"
        ) from exc
    if size is not None and received != size:
        raise SourceInterrupted(f"{where}: blob {digest} ended after {received} of {size} bytes")
    if digest_of(sha) != digest:
        raise RegistryError(
            f"{where}: blob {digest} arrived with digest {digest_of(sha)}",
            fix="the registry or a proxy altered the blob; retry, or report it to the registry operator",
        )
