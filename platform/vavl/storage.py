"""Local paths and s3:// URIs behind one pyarrow filesystem interface.

`resolve(uri)` returns `(filesystem, path)`. For `s3://bucket/key` the filesystem is a pyarrow
`S3FileSystem` configured from the standard AWS environment: `AWS_ENDPOINT_URL` (an S3-compatible
server such as MinIO or moto), `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` /
`AWS_SESSION_TOKEN`, `AWS_REGION` / `AWS_DEFAULT_REGION`. Only the endpoint and region are set on
the filesystem object; credentials are never given to it, so pyarrow's default AWS chain looks them
up at each use (environment, shared config, instance or pod role) in the process that uses it.
Ray Tune pickles its storage filesystem into its state files, and Ray Data pickles this one into
its read tasks: a key held by the object would be written with them. Ray workers therefore need
the credentials in their own environment (a local cluster started by our driver inherits it; on a
cluster, the nodes' environment or role). Credentials never appear in a message: `redact(uri)`
strips user info and `hide_password(uri)` masks a password.

Sweep state (`tune.storage_path`) goes through `resolve(uri, whole_files=True)`: on local disk
each file is written beside its name and renamed into place, so a driver killed mid-write leaves
the previous file, never a cut one. Training runs (`train.storage_path`) do not: Ray Train reads
a checkpoint in place only from pyarrow's own `LocalFileSystem`, and copies it for every reader
from any other, and a resumed DDP run read a damaged copy once in four tries.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.fs as pafs

_CHUNK = 8 << 20


class StorageError(Exception):
    """A path or URI that cannot be resolved or accessed."""


def is_remote(uri: str) -> bool:
    return uri.startswith("s3://")


def redact(uri: str) -> str:
    """The URI without user info, query or fragment (where credentials could hide)."""
    if "://" not in uri:
        return uri
    parts = urlsplit(uri)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


SECRET_QUERY_KEYS = ("password", "secret", "token", "key", "credential", "signature")


def hide_password(uri: str) -> str:
    """The URI as a user may see it: its password and any secret-looking query value replaced
    by `***`, the rest kept (scheme, user, host, port, path), so it still says where it points."""
    if "://" not in uri:
        return uri
    parts = urlsplit(uri)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
    query = "&".join(
        f"{name}=***" if any(k in name.lower() for k in SECRET_QUERY_KEYS) else pair
        for pair in parts.query.split("&")
        if pair
        for name in [pair.split("=", 1)[0]]
    )
    if (netloc, query) == (parts.netloc, parts.query):
        return uri  # nothing to hide; urlunsplit would also drop the empty host of sqlite:////x
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _s3_filesystem() -> pafs.S3FileSystem:
    kwargs: dict[str, object] = {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        kwargs["scheme"] = parts.scheme
        kwargs["endpoint_override"] = parts.netloc
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        kwargs["region"] = region
    return pafs.S3FileSystem(**kwargs)


class WholeFileWriter:
    """A file that appears at `path` only when it is closed after every write succeeded.

    It is written as a hidden sibling, then renamed over `path` (atomic within a directory): a
    reader sees the old file or the new one, never part of one, even when the writing process is
    killed. The hidden sibling of a killed writer is left behind; nothing reads it.
    """

    def __init__(self, path: str) -> None:
        folder, name = os.path.split(path)
        self._path = path
        self._tmp = os.path.join(folder, f".{name}.tmp-{uuid.uuid4().hex}")
        self._file = open(self._tmp, "wb")  # noqa: SIM115 (closed by close())
        self._failed = False
        self.closed = False

    def write(self, data: bytes) -> int:
        try:
            return self._file.write(data)
        except BaseException:
            self._failed = True
            raise

    def flush(self) -> None:
        self._file.flush()

    def tell(self) -> int:
        return self._file.tell()

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._file.close()
        if self._failed:
            os.unlink(self._tmp)
        else:
            os.replace(self._tmp, self._path)


class WholeFilesOnLocalDisk(pafs.FileSystemHandler):
    """Local disk (pyarrow's own) whose every written file appears whole or not at all.

    For state another process reads back after this one dies: Ray Tune writes its experiment
    state by copying files over the previous ones, so a driver killed during a copy leaves a
    truncated file, which Tune cannot restore and replaces by a new, empty experiment. S3 needs
    no such care: an object PUT is all-or-nothing.
    """

    def __init__(self) -> None:
        self._fs = pafs.LocalFileSystem()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WholeFilesOnLocalDisk)

    def __hash__(self) -> int:
        return hash(WholeFilesOnLocalDisk)

    def get_type_name(self) -> str:
        return "local-whole-files"

    def normalize_path(self, path: str) -> str:
        return self._fs.normalize_path(path)

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return self._fs.get_file_info(paths)

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        return self._fs.get_file_info(selector)

    def create_dir(self, path: str, recursive: bool) -> None:
        self._fs.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self._fs.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self._fs.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        raise StorageError("refusing to delete the contents of the root directory")

    def delete_file(self, path: str) -> None:
        self._fs.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        self._fs.move(src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        with self.open_output_stream(dest) as out:
            for chunk in iter_chunks(self._fs, src):
                out.write(chunk)

    def open_input_stream(self, path: str) -> pa.NativeFile:
        return self._fs.open_input_stream(path)

    def open_input_file(self, path: str) -> pa.NativeFile:
        return self._fs.open_input_file(path)

    def open_output_stream(self, path: str, metadata: object = None) -> pa.NativeFile:
        return pa.PythonFile(WholeFileWriter(path), mode="w")

    def open_append_stream(self, path: str, metadata: object = None) -> pa.NativeFile:
        return self._fs.open_append_stream(path)


def is_local(fs: pafs.FileSystem) -> bool:
    return isinstance(fs, pafs.LocalFileSystem) or (
        isinstance(fs, pafs.PyFileSystem) and isinstance(fs.handler, WholeFilesOnLocalDisk)
    )


def resolve(uri: str, *, whole_files: bool = False) -> tuple[pafs.FileSystem, str]:
    """The filesystem and the path inside it for a local path, file:// or s3:// URI.

    `whole_files`: on local disk, every file written through the filesystem appears whole or
    not at all (`WholeFilesOnLocalDisk`), for state that must survive its writer being killed.
    """
    if is_remote(uri):
        parts = urlsplit(uri)
        if parts.username or parts.password:
            raise StorageError(
                f"{redact(uri)}: credentials inside an s3:// URI are refused; "
                "use the AWS_* environment variables"
            )
        if not parts.netloc:
            raise StorageError(f"{uri!r} names no bucket")
        return _s3_filesystem(), f"{parts.netloc}{parts.path}".rstrip("/")
    if uri.startswith("file://"):
        uri = urlsplit(uri).path
    if "://" in uri:
        raise StorageError(f"unsupported URI scheme in {redact(uri)} (local paths and s3:// only)")
    path = os.path.abspath(os.path.expanduser(uri))
    if whole_files:
        return pafs.PyFileSystem(WholeFilesOnLocalDisk()), path
    return pafs.LocalFileSystem(), path


def absolute(uri: str) -> str:
    """`uri` as every process can resolve it: an s3:// URI as is, a local path (or file:// URI)
    made absolute, since Ray workers run in other working directories than the driver."""
    if is_remote(uri):
        return uri
    return resolve(uri)[1]


def join(base: str, *parts: str) -> str:
    """Join path parts with '/', for both local paths and URIs."""
    out = base.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def is_file(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type == pafs.FileType.File


def needs_dirs(fs: pafs.FileSystem) -> bool:
    """Local disk needs parent folders; object stores do not (and get empty marker objects)."""
    return is_local(fs)


def _make_parent(fs: pafs.FileSystem, path: str) -> None:
    if needs_dirs(fs):
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)


def read_bytes(fs: pafs.FileSystem, path: str) -> bytes:
    with fs.open_input_stream(path) as stream:
        return stream.read()


def write_bytes(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Write a small file so that a reader sees either nothing or all of it.

    Local disk: `WholeFileWriter` (a hidden sibling, then a rename, atomic within a directory).
    S3: a single PUT is already all-or-nothing.
    """
    _make_parent(fs, path)
    if is_local(fs):
        writer = WholeFileWriter(path)
        try:
            writer.write(data)
        finally:
            writer.close()
        return
    with fs.open_output_stream(path) as out:
        out.write(data)


def list_files(fs: pafs.FileSystem, prefix: str, *, recursive: bool = True) -> list[str]:
    """Paths of the files under `prefix`, sorted; empty when it does not exist."""
    selector = pafs.FileSelector(prefix, recursive=recursive, allow_not_found=True)
    infos = fs.get_file_info(selector)
    return sorted(info.path for info in infos if info.type == pafs.FileType.File)


def list_dir(fs: pafs.FileSystem, prefix: str) -> list[pafs.FileInfo]:
    """Direct children (files and directories) of `prefix`; empty when it does not exist."""
    selector = pafs.FileSelector(prefix, recursive=False, allow_not_found=True)
    return sorted(fs.get_file_info(selector), key=lambda info: info.path)


def delete_prefix(fs: pafs.FileSystem, prefix: str) -> None:
    """Delete a directory (or key prefix) and everything below it; no error when absent."""
    info = fs.get_file_info(prefix)
    if info.type == pafs.FileType.File:
        fs.delete_file(prefix)
    elif info.type == pafs.FileType.Directory:
        fs.delete_dir(prefix)


def delete_file(fs: pafs.FileSystem, path: str) -> None:
    if is_file(fs, path):
        fs.delete_file(path)


def move(fs: pafs.FileSystem, src: str, dst: str) -> None:
    """Move one file. Local disk: an atomic rename. S3: a server-side copy, then delete."""
    _make_parent(fs, dst)
    if is_local(fs):
        fs.move(src, dst)
        return
    fs.copy_file(src, dst)
    fs.delete_file(src)


def copy(fs: pafs.FileSystem, src: str, dst: str) -> None:
    _make_parent(fs, dst)
    fs.copy_file(src, dst)


def iter_chunks(fs: pafs.FileSystem, path: str, chunk: int = _CHUNK) -> Iterator[bytes]:
    with fs.open_input_stream(path) as stream:
        while block := stream.read(chunk):
            yield block


def sha256(fs: pafs.FileSystem, path: str) -> tuple[str, int]:
    """The hex sha256 and size in bytes of one file, streamed."""
    digest = hashlib.sha256()
    size = 0
    for block in iter_chunks(fs, path):
        digest.update(block)
        size += len(block)
    return digest.hexdigest(), size
