"""Compile every locale/*/LC_MESSAGES/*.po under kehu/ into .mo, with polib (no GNU gettext)."""

import sys
from pathlib import Path

import polib

ROOT = Path(__file__).resolve().parent.parent / "kehu"


def main() -> int:
    compiled = 0
    for po_path in sorted(ROOT.glob("**/locale/*/LC_MESSAGES/*.po")):
        mo_path = po_path.with_suffix(".mo")
        if mo_path.exists() and mo_path.stat().st_mtime >= po_path.stat().st_mtime:
            continue
        polib.pofile(str(po_path)).save_as_mofile(str(mo_path))
        compiled += 1
    print(f"translation catalogs: {compiled} compiled")
    return 0


if __name__ == "__main__":
    sys.exit(main())
