"""Runs in object storage (``s3://``, ``gs://``, ``az://``, ``hf://``): staged, then read locally.

A remote RUN is never read as if it were a local path. ``fsspec.core.url_to_fs`` resolves the URL
(credentials come from the usual environment of each library: ``AWS_*`` variables and profiles,
``AWS_ENDPOINT_URL`` for an S3-compatible server, ``GOOGLE_APPLICATION_CREDENTIALS``,
``AZURE_STORAGE_*``, ``HF_TOKEN``); the run's files are listed remotely, and every file discovery
could read is streamed (in chunks, never whole in memory) into a private local staging folder —
the files it would only name (weights, optimiser state, hidden files, checkpoint contents other
than ``trainer_state.json``) are listed as not read without being downloaded. The normal local
ingest then reads the staged copy, so every loader, the safety checks and the located issues work
unchanged; ``run.path`` and error messages name the URL (without credentials in it).

``analyze`` stages into its output folder (``<output>/cache/remote/<key>/``) and keeps the copy:
a re-run downloads only the files whose size or ETag changed. Other callers (``samples``,
``compare``) stage into a temporary folder that is deleted afterwards. docs/cli.md, "Reading from
object storage"; the choice is explained in docs/design-changes.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from analyzer.errors import InputError

if TYPE_CHECKING:
    from analyzer.model import RunData

# scheme -> the extra that reads it (pyproject.toml [project.optional-dependencies])
SCHEMES: Final[dict[str, str]] = {
    "s3": "s3", "s3a": "s3",
    "gs": "gcs", "gcs": "gcs",
    "az": "azure", "abfs": "azure", "abfss": "azure",
    "hf": "hf",
}
EXTRA_PACKAGES: Final[dict[str, str]] = {"s3": "s3fs", "gcs": "gcsfs", "azure": "adlfs", "hf": "huggingface_hub"}
# spelled out: tests/test_docs.py checks every install line names an extra that exists
INSTALL_HINTS: Final[dict[str, str]] = {
    "s3": 'pip install "logscan-rl[s3]"',
    "gcs": 'pip install "logscan-rl[gcs]"',
    "azure": 'pip install "logscan-rl[azure]"',
    "hf": 'pip install "logscan-rl[hf]"',
}

# seconds for a connection and for each read (S3); a network that hangs fails after this, not never
TIMEOUT_ENV: Final = "LOGSCAN_REMOTE_TIMEOUT"
DEFAULT_TIMEOUT: Final = 20.0
S3_RETRIES: Final = 2  # attempts per call; listing a run makes two calls before the first download
CHUNK: Final = 8 << 20  # bytes copied at a time: a 10 GB completion file never sits in memory

# environment variables whose values must never appear in a message
_SECRET_ENV: Final = (
    "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID", "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_CLIENT_SECRET", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN",
)
_URL_RE: Final = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")
_MANIFEST: Final = "manifest.json"


def is_url(text: object) -> bool:
    """Whether ``text`` is a URL (``scheme://…``) rather than a local path."""
    return isinstance(text, str) and _URL_RE.match(text) is not None


def scheme_of(url: str) -> str:
    m = _URL_RE.match(url)
    return m.group(1).lower() if m else ""


def display_url(url: str) -> str:
    """The URL as logscan prints and records it: no ``user:secret@``, no ``?query`` (a SAS token)."""
    m = _URL_RE.match(url)
    if m is None:
        return url
    rest = url[m.end():].split("?", 1)[0].split("#", 1)[0]
    host, sep, path = rest.partition("/")
    user, at, where = host.rpartition("@")
    if at and ":" in user:  # user:secret@ (abfs://container@account keeps its container)
        host = where
    return f"{m.group(1).lower()}://{host}{sep}{path.rstrip('/')}"


def _has_password(url: str) -> bool:
    m = _URL_RE.match(url)
    host = url[m.end():].split("/", 1)[0] if m else ""
    user, at, _ = host.rpartition("@")
    return bool(at) and ":" in user


def default_output_dir(url: str) -> Path:
    """``./logscan-<bucket>-<prefix>/`` in the working directory: a bucket has no writable ``RUN/logscan/``."""
    shown = display_url(url)
    body = shown.split("://", 1)[1]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(p for p in body.split("/") if p)).strip("._-") or "run"
    if len(slug) > 80:  # keep the run's own name (the end), and a hash so two long prefixes differ
        slug = slug[-60:].lstrip("._-") + "-" + hashlib.sha256(shown.encode()).hexdigest()[:8]
    return Path(f"logscan-{slug}")


def redact(text: str) -> str:
    """``text`` without the value of any credential found in the environment."""
    for name in _SECRET_ENV:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def timeout_seconds() -> float:
    raw = os.environ.get(TIMEOUT_ENV)
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise InputError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    if not value > 0:
        raise InputError(f"{TIMEOUT_ENV}={raw!r} must be more than 0 seconds")
    return value


def _storage_options(scheme: str) -> dict[str, Any]:
    """Per-library options: timeouts where logscan sets them, never credentials (the environment's)."""
    if SCHEMES.get(scheme) == "s3":
        t = timeout_seconds()
        # botocore's own default is 60 s per read, retried; with s3fs's retries (S3_RETRIES below)
        # a store that accepts connections and never answers costs a few timeouts, not minutes
        return {"config_kwargs": {"connect_timeout": t, "read_timeout": t, "retries": {"max_attempts": 1}}}
    return {}


def filesystem(url: str) -> tuple[Any, str]:
    """``(fsspec filesystem, path inside it)`` for ``url``; ``InputError`` naming the extra to
    install when the scheme's library is missing, or naming the schemes logscan reads."""
    scheme = scheme_of(url)
    shown = display_url(url)
    extra = SCHEMES.get(scheme)
    if extra is None:
        known = ", ".join(f"{s}://" for s in ("s3", "gs", "az", "hf"))
        raise InputError(f"{shown}: logscan reads runs in object storage ({known}) or local paths, not {scheme}://")
    if _has_password(url):
        raise InputError(
            f"{shown}: credentials in the URL are not used; give them in the environment "
            "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE, GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_*, HF_TOKEN)"
        )
    hint = f"reading {scheme}:// needs the {extra} extra: {INSTALL_HINTS[extra]}"
    try:
        import fsspec.core
    except ImportError:
        raise InputError(f"{shown}: {hint}") from None
    options = _storage_options(scheme)
    try:
        fs, path = fsspec.core.url_to_fs(url, skip_instance_cache=True, **options)
    except ImportError:
        raise InputError(f"{shown}: {hint}") from None
    except Exception as exc:
        raise remote_error(exc, shown) from None
    if extra == "s3" and hasattr(fs, "retries"):
        fs.retries = S3_RETRIES  # s3fs retries a timed-out call 5 times by default
    return fs, path


def remote_error(exc: BaseException, shown: str, *, what: str = "") -> InputError:
    """One line for a failure talking to the store: missing bucket or object, access denied, no
    credentials, a timeout, no connection — never a traceback, never a secret."""
    chain: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and len(chain) < 10:
        chain.append(e)
        e = e.__cause__ or e.__context__
    names = " ".join(type(c).__name__ for c in chain)
    texts = " ".join(str(c) for c in chain)
    where = f"{shown}{what}"
    if "NoCredentialsError" in names or "Unable to locate credentials" in texts:
        return InputError(
            f"{where}: no credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), "
            "and AWS_ENDPOINT_URL for an S3-compatible server"
        )
    if any("Timeout" in type(c).__name__ or isinstance(c, TimeoutError) for c in chain):
        return InputError(
            f"{where}: the storage did not answer within {timeout_seconds():g} s "
            f"(network or endpoint unreachable; {TIMEOUT_ENV} sets the timeout)"
        )
    if "NoSuchBucket" in texts or "bucket does not exist" in texts.lower():
        return InputError(f"{where}: no such bucket")
    if any(isinstance(c, PermissionError) for c in chain) or re.search(r"AccessDenied|Forbidden|\b403\b|InvalidAccessKeyId|SignatureDoesNotMatch", texts):
        return InputError(f"{where}: access denied; check the credentials and their permissions")
    if any(isinstance(c, FileNotFoundError) for c in chain) or re.search(r"NoSuchKey|\b404\b|Not ?Found", texts):
        return InputError(f"{where}: no such file or folder")
    if re.search(r"EndpointConnectionError|ClientConnector|ConnectionError|Connection refused|Could not connect", names + " " + texts):
        endpoint = " and AWS_ENDPOINT_URL" if SCHEMES.get(scheme_of(shown)) == "s3" else ""
        return InputError(f"{where}: cannot connect to the storage endpoint (check the network{endpoint})")
    detail = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    if len(detail) > 200:
        detail = detail[:199] + "…"
    return InputError(f"{where}: cannot read from the storage ({type(exc).__name__}: {detail})")


# --- staging --------------------------------------------------------------------------------------


@dataclass(slots=True)
class Staged:
    """A remote run's local copy: ``path`` is what the local ingest reads."""

    url: str  # as displayed (no credentials)
    root: Path  # the staged folder (the run's folder, or the folder holding the one file)
    path: Path  # the folder, or the file when the URL names one file
    fetched: int = 0
    unchanged: int = 0
    bytes_fetched: int = 0
    not_fetched: list[tuple[str, str]] = field(default_factory=list)  # (relative name, why)


def _not_fetched_reason(rel: str) -> str | None:
    """Why discovery would only name, never open, ``rel`` (a path relative to the run): not worth
    downloading. None: fetch it."""
    from analyzer.ingest.sources import _CHECKPOINT_RE, _not_a_log

    parts = rel.split("/")
    if parts[-1].startswith("."):
        return "hidden file"
    if any(_CHECKPOINT_RE.search(p) for p in parts[:-1]) and parts[-1] != "trainer_state.json":
        return "checkpoint file (weights, optimiser or config), not a training log"
    return _not_a_log(Path(parts[-1]))


def _hidden_folder(rel: str) -> str | None:
    """``.git/`` for ``.git/objects/ab/cd``: the first hidden folder on the way to ``rel``."""
    parts = rel.split("/")[:-1]
    for i, part in enumerate(parts):
        if part.startswith("."):
            return "/".join(parts[: i + 1]) + "/"
    return None


def _signature(info: dict[str, Any]) -> list[Any]:
    """What says a remote file changed: its size and ETag (or modification time)."""
    tag = next((info[k] for k in ("ETag", "etag", "blob_id", "generation", "md5Hash", "LastModified", "last_modified", "mtime") if info.get(k)), None)
    return [info.get("size"), str(tag) if tag is not None else None]


def _rel(path: str, base: str) -> str:
    return path[len(base):].lstrip("/") if path.startswith(base) else path.rsplit("/", 1)[-1]


def stage(url: str, into: Path) -> Staged:
    """Copy the run at ``url`` into ``into`` (created private; kept in step with the remote: files
    gone from it are deleted, unchanged ones are not downloaded again)."""
    shown = display_url(url)
    fs, root = filesystem(url)
    root = root.rstrip("/")
    try:
        info = fs.info(root)
    except Exception as exc:
        raise _missing(fs, root, shown, exc) from None
    name = root.rsplit("/", 1)[-1] or "run"
    local_root = into / "run"
    try:
        into.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(into, 0o700)  # the run may be private: so is its copy
        if info.get("type") == "directory":
            local_root = into / name
            try:
                listing = fs.find(root, withdirs=True, detail=True)
            except Exception as exc:
                raise remote_error(exc, shown) from None
            files = {_rel(p, root): i for p, i in listing.items() if i.get("type") != "directory"}
            dirs = {_rel(p, root) for p, i in listing.items() if i.get("type") == "directory"}
            if not files and not dirs:
                raise InputError(f"{shown}: no such file or folder (an empty prefix)")
            staged = Staged(shown, local_root, local_root)
        else:
            files = {name: info}
            dirs = set()
            staged = Staged(shown, local_root, local_root / name)
        _sync(fs, root, files, dirs, staged, into / _MANIFEST, info.get("type") == "directory")
    except OSError as exc:  # the local disk: full, read-only, a file in the way
        from analyzer.errors import output_error

        raise output_error(exc, into) from exc
    return staged


def _missing(fs: Any, root: str, shown: str, exc: BaseException) -> InputError:
    """A URL that does not resolve: say whether the bucket (container) itself is missing."""
    err = remote_error(exc, shown)
    bucket = root.split("/", 1)[0]
    if str(err).endswith(": no such bucket"):
        return InputError(f"{shown}: no such bucket ({bucket})")
    if not str(err).endswith(": no such file or folder") or SCHEMES.get(scheme_of(shown)) == "hf":
        return err
    if "/" not in root:
        return InputError(f"{shown}: no such bucket ({bucket})")
    try:
        fs.info(bucket)
    except Exception as bexc:
        berr = remote_error(bexc, shown)
        if str(berr).endswith((": no such file or folder", ": no such bucket")):
            return InputError(f"{shown}: no such bucket ({bucket})")
        return berr
    return InputError(f"{shown}: no such file or folder in the bucket {bucket}")


def _sync(fs: Any, root: str, files: dict[str, Any], dirs: set[str], staged: Staged, manifest: Path, is_dir: bool) -> None:
    try:
        old = json.loads(manifest.read_text(encoding="utf-8")) if manifest.is_file() else {}
    except (OSError, ValueError):
        old = {}
    if not isinstance(old, dict) or old.get("url") != staged.url:
        old = {}
    previous: dict[str, Any] = old.get("files", {}) if isinstance(old.get("files"), dict) else {}
    wanted: dict[str, list[Any]] = {}
    hidden: set[str] = set()
    for rel in sorted(files):
        if not rel or rel.endswith("/"):  # a folder marker (a zero-byte "prefix/" object)
            continue
        if rel.startswith("/") or ".." in rel.split("/") or "\0" in rel:
            staged.not_fetched.append((rel.replace("\0", "\\0"), "a name that is not a path inside the run; not downloaded"))
            continue
        folder = _hidden_folder(rel)
        if folder is not None:  # named once, as discovery names a hidden folder (.git/ may hold thousands)
            if folder not in hidden:
                hidden.add(folder)
                staged.not_fetched.append((folder, "hidden folder; not downloaded"))
            continue
        why = _not_fetched_reason(rel)
        if why is not None:
            staged.not_fetched.append((rel, f"{why}; not downloaded"))
            continue
        wanted[rel] = _signature(files[rel])
    # start clean when the layout changed (a file became a folder, …)
    base = staged.root
    if base.exists() and not base.is_dir():
        base.unlink()
    base.mkdir(parents=True, exist_ok=True)
    for d in sorted(dirs):
        if d and ".." not in d.split("/") and "\0" not in d and not any(p.startswith(".") for p in d.split("/")):
            (base / d).mkdir(parents=True, exist_ok=True)
        elif d and (folder := _hidden_folder(d + "/x")) is not None and folder not in hidden:
            hidden.add(folder)
            staged.not_fetched.append((folder, "hidden folder; not downloaded"))
    for rel, sig in wanted.items():
        local = base / rel if is_dir else staged.path
        if previous.get(rel) == sig and sig[1] is not None and local.is_file() and local.stat().st_size == sig[0]:
            staged.unchanged += 1
            continue
        remote_path = f"{root}/{rel}" if is_dir else root
        staged.bytes_fetched += _download(fs, remote_path, local, staged.url, rel)
        staged.fetched += 1
    # a file deleted remotely must not be read from an old copy
    keep = {base / rel if is_dir else staged.path for rel in wanted}
    for p in sorted(base.rglob("*"), reverse=True):
        if p.is_file() or p.is_symlink():
            if p not in keep:
                p.unlink()
        elif p.is_dir() and p.relative_to(base).as_posix() not in dirs:
            with suppress(OSError):
                p.rmdir()
    tmp = manifest.with_suffix(".tmp")
    tmp.write_text(json.dumps({"url": staged.url, "files": wanted}, indent=1), encoding="utf-8")
    tmp.replace(manifest)


def _download(fs: Any, remote_path: str, local: Path, shown: str, rel: str) -> int:
    """Stream one object into ``local`` (via a temporary name: an interrupted copy is never read).
    A failure of the store is an ``InputError``; one of the local disk (full, read-only) stays an
    ``OSError`` for the caller to report as an output that cannot be written."""
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = local.with_name(local.name + ".logscan-part")
    total = 0
    try:
        try:
            src = fs.open(remote_path, "rb", block_size=CHUNK)
        except Exception as exc:
            raise remote_error(exc, shown, what=f" ({rel})") from None
        with src, open(tmp, "wb") as dst:
            while True:
                try:
                    chunk = src.read(CHUNK)
                except Exception as exc:
                    raise remote_error(exc, shown, what=f" ({rel})") from None
                if not chunk:
                    break
                dst.write(chunk)
                total += len(chunk)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(local)
    return total


@contextmanager
def staged_run(url: str, into: Path | None = None) -> Iterator[Staged]:
    """``stage`` into ``into`` (kept), or into a private temporary folder deleted on exit."""
    if into is not None:
        yield stage(url, into)
        return
    tmp = Path(tempfile.mkdtemp(prefix="logscan-remote-"))
    try:
        yield stage(url, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_remote_run(url: str, *, staging: Path | None = None) -> RunData:
    """Stage the run at ``url`` (into ``staging``, kept; or a temporary folder) and read it with
    the local ingest. ``run.path`` is the URL without credentials; files not downloaded are in
    ``run.report.not_read``."""
    from analyzer.ingest import load_run
    from analyzer.model import NotRead

    with staged_run(url, staging) as staged:
        try:
            run = load_run(staged.path)
        except InputError as exc:  # name the URL, not the staging folder
            raise InputError(str(exc).replace(str(staged.path), staged.url).replace(str(staged.root), staged.url)) from None
        run.path = staged.url
        run.report.not_read.extend(NotRead(rel, why) for rel, why in staged.not_fetched)
        mb = staged.bytes_fetched / 1e6
        run.report.notes.append(
            f"read from {staged.url}: {staged.fetched} file(s) downloaded ({mb:.1f} MB)"
            + (f", {staged.unchanged} unchanged since the last run" if staged.unchanged else "")
            + (f", {len(staged.not_fetched)} not downloaded (not training logs)" if staged.not_fetched else "")
        )
    return run


__all__ = [
    "SCHEMES", "Staged", "default_output_dir", "display_url", "filesystem", "is_url",
    "load_remote_run", "remote_error", "stage", "staged_run",
]
