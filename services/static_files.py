"""Static files under content-hashed names, compressed once at start, served by WhiteNoise (UX-3).

At start every file under static/ is hashed and copied into the build directory as
``name.<hash>.ext`` (Django's manifest naming: ``vendor/htmx-2.0.11.min.<hash>.js``) with a
brotli ``.br`` and a gzip ``.gz`` beside it. WhiteNoise answers /static/ before Flask: a hashed
name is cached as immutable for WhiteNoise's ten years (changed content gets a new name, so no
browser ever asks twice), a plain name is served straight from static/ with a one-minute cache
so an old or hand-typed URL keeps working. Templates ask for ``static_url('css/app.css')``.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from wsgiref.headers import Headers

import brotli
from flask import Flask, url_for
from whitenoise import WhiteNoise

HASH_LENGTH = 12  # hex digits of SHA-256: 48 bits, plenty for a handful of files
PLAIN_NAME_MAX_AGE = 60  # seconds; plain names are not content-addressed


def hashed_name(name: str, content: bytes) -> str:
    """``css/app.css`` -> ``css/app.<first 12 hex digits of its SHA-256>.css``."""
    digest = hashlib.sha256(content).hexdigest()[:HASH_LENGTH]
    path = PurePosixPath(name)
    return str(path.with_name(f"{path.stem}.{digest}{path.suffix}"))


def build(static_folder: str | Path, build_dir: str | Path) -> dict[str, str]:
    """Hash every file under ``static_folder``; make sure ``build_dir`` holds its hashed copy
    with ``.br`` and ``.gz`` beside it. Returns ``{name: hashed name}``.

    A hashed copy that already exists is complete (it is written last) and cannot be stale
    (same name, same bytes), so a restart only reads and hashes: brotli at its best quality
    costs ~45 ms for htmx, every test app and every worker would otherwise pay it.
    """
    source, target = Path(static_folder), Path(build_dir)
    manifest: dict[str, str] = {}
    for path in sorted(source.rglob("*")):
        if not path.is_file():
            continue
        name = path.relative_to(source).as_posix()
        content = path.read_bytes()
        manifest[name] = hashed_name(name, content)
        copy = target / manifest[name]
        if copy.exists():
            continue
        copy.parent.mkdir(parents=True, exist_ok=True)
        for suffix, packed in (
            (".br", brotli.compress(content)),
            (".gz", gzip.compress(content, compresslevel=9, mtime=0)),
        ):
            if len(packed) < len(content):  # WhiteNoise serves a variant whenever it exists
                _write(copy.with_name(copy.name + suffix), packed)
        _write(copy, content)
    return manifest


def _write(path: Path, data: bytes) -> None:
    # Several workers may start at once and build the same file: write aside, then rename,
    # so nobody ever serves half a file.
    aside = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    aside.write_bytes(data)
    os.replace(aside, path)


def init_app(app: Flask, headers: Mapping[str, str]) -> None:
    """Build the hashed copies, put WhiteNoise in front of the app and give templates
    ``static_url(name)``. ``headers`` are added to every static response: WhiteNoise answers
    before Flask, so the app's after_request hook never sees these responses."""
    assert app.static_folder and app.static_url_path
    # The build lives in instance/, not a temporary directory: instance/ is already where the
    # app writes its generated files, git ignores it, every worker of this instance shares it
    # and it survives restarts, so the compression above happens once per content, not once
    # per process. Old hashed copies stay (as with Django's collectstatic): a page rendered
    # before a deploy still finds its stylesheet, and they weigh a few kB.
    build_dir = os.path.join(app.instance_path, "static-build")
    manifest = build(app.static_folder, build_dir)

    whitenoise = WhiteNoise(
        app.wsgi_app,
        max_age=PLAIN_NAME_MAX_AGE,
        allow_all_origins=False,  # our files are for our pages only (CORP same-origin)
        immutable_file_test=_in_directory(build_dir),
        add_headers_function=_add_headers(headers),
    )
    whitenoise.add_files(app.static_folder, prefix=app.static_url_path)
    whitenoise.add_files(build_dir, prefix=app.static_url_path)
    app.wsgi_app = whitenoise  # type: ignore[method-assign]

    def static_url(name: str) -> str:
        """The URL of static/<name> under its hashed name; an unknown name is an error."""
        return url_for("static", filename=manifest[name])

    app.add_template_global(static_url)


def _in_directory(directory: str) -> Callable[[str, str], bool]:
    """Everything WhiteNoise finds in the build directory is content-addressed."""
    root = os.path.abspath(directory) + os.sep

    def is_hashed(path: str, _url: str) -> bool:
        return path.startswith(root)

    return is_hashed


def _add_headers(extra: Mapping[str, str]) -> Callable[[Headers, str, str], None]:
    def add(headers: Headers, _path: str, _url: str) -> None:
        for name, value in extra.items():
            headers[name] = value

    return add
