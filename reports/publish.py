"""Where report files go locally: a directory, each file written whole. The S3 prefix
is an adapter of the kernel (``rollback.report_uploads``), built by the ``Runtime``."""

from __future__ import annotations

import os
from pathlib import Path

from rollback.report_uploads import OutputFile


def write_local(files: list[OutputFile], out_dir: str | os.PathLike[str]) -> list[str]:
    """Write each file into ``out_dir`` (created if missing); returns the paths."""
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for file in files:
        path = directory / file.name
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(file.body)
        tmp.replace(path)  # readers never see half a file
        paths.append(str(path))
    return paths
