"""Folders made once and kept (a dequantized model, a random copy of one, a control's coder): each is built in
a staging folder beside its place and renamed into it, so an interrupted build never leaves a folder that looks
finished, and two processes building the same one at once both end with a whole one."""

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def built_once(target: Path, build: Callable[[Path], None]) -> Path:
    """`target`, made by `build(staging)` unless it exists already; a build that fails leaves nothing behind."""
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    try:
        build(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        staging.rename(target)
    except OSError:  # another process built the same folder first; theirs is as good as ours
        shutil.rmtree(staging, ignore_errors=True)
    return target
