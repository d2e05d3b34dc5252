"""Keeping every mapping spec's text by its content hash.

An order's history records only the hash of the spec that mapped it (``prepare_order``'s result);
the file behind it is edited later, so an auditor asking "which rules produced this document?"
needs that exact text. The hub stores each spec's text under its hash when it starts (every file
in ``mappings/specs``) and whenever a timeline or the archiver meets a hash it does not know yet
and the named spec still has that content.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import structlog

from mappings import SPECS_DIR, load_spec
from store import Store

log = structlog.get_logger("tongdao.audit")


def _save(store: Store, path: Path, name: str) -> str | None:
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()  # the engine's content_hash: sha256 of the file's bytes
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    store.save_spec_text(digest, name, str(path), text)
    return digest


def record_specs(store: Store, directory: Path = SPECS_DIR) -> int:
    """Store the text of every spec file in ``directory`` (known hashes are skipped); returns how many
    files were read."""
    paths = sorted(p for p in directory.glob("*.y*ml") if p.is_file())
    for path in paths:
        try:
            _save(store, path, path.stem)
        except OSError as exc:
            log.warning("audit.spec_unreadable", path=str(path), error=str(exc))
    return len(paths)


def capture_spec(store: Store, name: str, digest: str, known: set[str] | None = None) -> bool:
    """Make sure the text behind ``digest`` is stored: True when it is (now or already).

    Only the spec ``name`` as it is now can be captured: a hash whose file has changed since stays
    unknown unless the hub stored it while that version was live (at start, or here, earlier)."""
    if not digest:
        return False
    if digest in (known if known is not None else store.spec_hashes()):
        return True
    if not name:
        return False
    try:
        spec = load_spec(name)
    except Exception:  # renamed or removed: nothing to capture
        return False
    if spec.content_hash != digest:
        return False
    try:
        return _save(store, Path(spec.source), spec.name) == digest
    except OSError:
        return False
