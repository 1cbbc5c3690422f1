"""DICOM UIDs for exported synthetic series.

Default scheme: ``2.25.<decimal of a random UUID>`` (DICOM PS3.5 B.2). It needs no registered
organisation root, is at most 44 characters, and two exports can never collide in practice.

A site that has its own registered root can pass ``uid_root`` (for example ``1.2.826.0.1.3680043.10.999``):
UIDs are then ``<root>.<random decimal>`` filled up to the 64-character limit. The root is kept to
at most 40 characters so that at least 23 random digits (~76 bits) follow it.
"""

from __future__ import annotations

import re

from pydicom.uid import UID, generate_uid

MAX_ROOT_LENGTH = 40
_ROOT_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def normalize_uid_root(root: str | None) -> str | None:
    """Validate a UID root and return it with a trailing dot (``None`` stays ``None``).

    Raises ``ValueError`` naming the problem: components must be digits without leading zeros,
    separated by single dots, and the root must leave room for the random part.
    """
    if root is None:
        return None
    text = str(root).strip()
    if text.endswith("."):
        text = text[:-1]
    if not text:
        return None
    if not _ROOT_RE.match(text):
        raise ValueError(
            f"UID root {root!r} is not valid: use digits separated by dots, no leading zeros "
            "in a component (e.g. '1.2.826.0.1.3680043.10.999')"
        )
    if len(text) > MAX_ROOT_LENGTH:
        raise ValueError(
            f"UID root {root!r} is {len(text)} characters; at most {MAX_ROOT_LENGTH} leave room "
            "for the random part within DICOM's 64-character UID limit"
        )
    return text + "."


def new_uid(root: str | None = None) -> UID:
    """A fresh UID: ``2.25.<uuid>`` by default, or ``<root>.<random digits>`` with a root."""
    prefix = normalize_uid_root(root)
    uid = generate_uid(prefix=None) if prefix is None else generate_uid(prefix=prefix)
    if not uid.is_valid:  # defensive: generate_uid should never produce this
        raise RuntimeError(f"generated an invalid UID {uid!r}")
    return uid
