"""Receiving a grades workbook: safe stored name, type and size checks.

An upload is streamed into ``.staging/`` first and only moved into
``uploads/`` once it passed every check, so a refused upload leaves nothing
behind where the cleaner, recovery or an operator would look. Files are only
ever inspected as bytes (magic numbers, the zip directory); nothing is
executed or unpickled.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import unicodedata
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from ..engine.excel import sniff_file
from .errors import ServiceError

ALLOWED_EXTENSIONS = (".xlsx", ".xls")
# Under uploads/: one file per distinct content; each task's upload is a hard link to it.
CONTENT_DIR = ".content"
# A zip member may legitimately compress well (repetitive sheet XML), but not
# like a bomb; the ratio is only checked for members large enough to matter.
MAX_MEMBER_RATIO = 200
RATIO_CHECK_MIN_BYTES = 1024 * 1024
MAX_ZIP_MEMBERS = 5000
_CHUNK = 1024 * 1024
# File names are stored as UTF-8; most file systems cap a name at 255 bytes.
_MAX_NAME_BYTES = 200


class UploadRejected(ServiceError):
    """The upload is refused (nothing of it is kept); ``message`` is shown to the client."""


@dataclass(frozen=True)
class SavedUpload:
    path: Path
    stored_name: str
    original_name: str
    sha256: str
    size: int


def extension_of(filename: str) -> str:
    return os.path.splitext(filename)[1].lower()


def safe_original_name(filename: str) -> str:
    """The client's name reduced to a plain file name: no directories, no control
    characters, no shell or path specials; Chinese and other letters are kept."""
    name = unicodedata.normalize("NFC", filename or "")
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = re.sub(r'[<>:"|?*\x00]', "_", name).strip().rstrip(".")
    stem, ext = os.path.splitext(name)
    if not ext and stem.startswith("."):
        stem, ext = "", stem  # ".xlsx": an extension without a name
    stem = stem.strip(" .") or "upload"
    ext = ext.lower()
    encoded = stem.encode("utf-8")
    if len(encoded) > _MAX_NAME_BYTES:
        stem = encoded[:_MAX_NAME_BYTES].decode("utf-8", errors="ignore")
    return f"{stem}{ext}"


def receive(stream: BinaryIO, filename: str, *, staging_dir: Path, max_bytes: int,
            max_unzipped_bytes: int, check: bool = True,
            durable: bool = True) -> tuple[Path, str, str, int]:
    """Write one upload to a temporary file in ``staging_dir`` and check it there.

    Returns (temporary path, safe original name, sha256, size); the caller
    owns the file. Raises UploadRejected (nothing is left on disk) for a wrong
    extension, wrong content, an oversize file or a decompression bomb.
    ``check=False`` leaves the content check (``check_content``) to the caller;
    ``durable=False`` skips the fsync of a file that is deleted within seconds.
    """
    original = safe_original_name(filename)
    ext = extension_of(original)
    if ext not in ALLOWED_EXTENSIONS:
        raise UploadRejected("UNSUPPORTED_FILE_TYPE", "只支持 .xlsx 或 .xls 格式的 Excel 文件")
    staging_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix="upload-", suffix=".part" + ext, dir=staging_dir)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        size = 0
        with os.fdopen(fd, "wb") as out:
            while chunk := stream.read(_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise UploadRejected(
                        "FILE_TOO_LARGE",
                        f"文件过大，最大允许 {max_bytes / 1024 / 1024:g} MB")
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            if durable:
                os.fsync(out.fileno())
        if size == 0:
            raise UploadRejected("EMPTY_FILE", "上传的文件是空的")
        if check:
            check_content(tmp, ext, max_unzipped_bytes)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, original, digest.hexdigest(), size


def save_upload(stream: BinaryIO, filename: str, *, uploads_dir: Path, staging_dir: Path,
                max_bytes: int, max_unzipped_bytes: int, now: datetime | None = None
                ) -> SavedUpload:
    """Check and store one upload as ``uploads/{timestamp}_{original}``, a hard link
    to ``uploads/.content/{sha256}{ext}`` (identical uploads are stored once).

    Raises UploadRejected (nothing is left on disk) for a wrong extension,
    wrong content, an oversize file or a decompression bomb.
    """
    tmp, original, sha256, size = receive(stream, filename, staging_dir=staging_dir,
                                          max_bytes=max_bytes,
                                          max_unzipped_bytes=max_unzipped_bytes)
    uploads_dir.mkdir(parents=True, exist_ok=True)
    try:
        blob = _keep_content(tmp, uploads_dir / CONTENT_DIR, sha256 + extension_of(original))
        stored = _place(blob, uploads_dir, original, now or datetime.now())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return SavedUpload(path=uploads_dir / stored, stored_name=stored, original_name=original,
                       sha256=sha256, size=size)


def discard_upload(saved: SavedUpload) -> None:
    """Undo ``save_upload`` for a refused start: the task's name, and the stored
    content too when no other task's upload links to it."""
    blob = saved.path.parent / CONTENT_DIR / (saved.sha256 + extension_of(saved.stored_name))
    saved.path.unlink(missing_ok=True)
    try:
        if blob.stat().st_nlink <= 1:
            blob.unlink(missing_ok=True)
    except FileNotFoundError:
        pass  # a concurrent discard of the same content took it


def check_content(path: Path, ext: str, max_unzipped_bytes: int) -> None:
    """The bytes must be what the extension claims, and an .xlsx must not
    inflate beyond ``max_unzipped_bytes`` (checked by actually inflating it,
    since the sizes a zip declares can lie)."""
    fmt = sniff_file(path)
    if ext == ".xls":
        if fmt != "xls":
            raise UploadRejected("BAD_FILE_CONTENT", "文件内容不是有效的 .xls（Excel 97-2003）工作簿")
        return
    if fmt != "xlsx" or not zipfile.is_zipfile(path):
        raise UploadRejected("BAD_FILE_CONTENT", "文件内容不是有效的 .xlsx 工作簿")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if "[Content_Types].xml" not in {i.filename for i in infos}:
                raise UploadRejected("BAD_FILE_CONTENT", "文件内容不是有效的 .xlsx 工作簿")
            _check_bomb(zf, infos, max_unzipped_bytes)
    except (zipfile.BadZipFile, NotImplementedError, EOFError, OSError) as exc:
        raise UploadRejected("BAD_FILE_CONTENT", "文件已损坏，无法作为 .xlsx 读取") from exc


def _check_bomb(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], limit: int) -> None:
    bomb = UploadRejected("SUSPICIOUS_ARCHIVE", "文件解压后体积异常（疑似压缩炸弹），已拒绝")
    if len(infos) > MAX_ZIP_MEMBERS:
        raise bomb
    declared = 0
    for info in infos:
        declared += info.file_size
        if declared > limit:
            raise bomb
        if (info.file_size >= RATIO_CHECK_MIN_BYTES
                and info.file_size > MAX_MEMBER_RATIO * max(info.compress_size, 1)):
            raise bomb
    inflated = 0
    for info in infos:
        if info.is_dir():
            continue
        with zf.open(info) as member:
            while chunk := member.read(_CHUNK):
                inflated += len(chunk)
                if inflated > limit:
                    raise bomb


def _keep_content(tmp: Path, content_dir: Path, name: str) -> Path:
    """The one stored copy of these bytes, ``uploads/.content/{sha256}{ext}``: identical
    uploads (the same export sent again) take no more disk. Its time is refreshed
    on reuse, so the cleaner does not take it from under a new task."""
    content_dir.mkdir(mode=0o700, exist_ok=True)
    blob = content_dir / name
    if blob.is_file():
        tmp.unlink(missing_ok=True)
        os.utime(blob)
    else:
        os.replace(tmp, blob)
    return blob


def _place(blob: Path, uploads_dir: Path, original: str, now: datetime) -> str:
    """Give the task its own name, ``{timestamp}_{original}`` (the operators' guide's
    layout), as a hard link to the stored content -- a copy where the file system
    has no hard links. ``link`` fails on an existing name, so names never collide."""
    stamp = now.strftime("%Y%m%d%H%M%S")
    for n in range(1000):
        name = f"{stamp}_{original}" if n == 0 else f"{stamp}_{n}_{original}"
        target = uploads_dir / name
        try:
            os.link(blob, target)
        except FileExistsError:
            continue
        except OSError:
            if not _copy_exclusive(blob, target):
                continue
        return name
    raise RuntimeError("could not find a free upload name")


def _copy_exclusive(src: Path, target: Path) -> bool:
    """Copy to ``target`` reserved with O_EXCL, replaced atomically; False if it exists."""
    try:
        fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return False
    os.close(fd)
    tmp = target.with_name(f".{target.name}.part")
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        target.unlink(missing_ok=True)
        raise
    return True
