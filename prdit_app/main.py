"""``prdit-studio``: the viewer (:mod:`prdit_app.viewer`), or with ``--generate`` the scripted
generation (:mod:`prdit_app.scripted_generate`), which drives the same viewer."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from prdit_app.generate_options import wants_generate
from prdit_app.viewer import build_parser, install_panels  # noqa: F401 - the entry's public names


def main(argv: Sequence[str] | None = None) -> int:
    if wants_generate(argv):  # --generate: sample, stream, screenshot
        from prdit_app import scripted_generate

        return scripted_generate.main(argv)
    from prdit_app import viewer

    return viewer.main(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
