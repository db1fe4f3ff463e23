"""Runs in object storage (analyzer/ingest/remote.py), against a real S3-compatible server.

moto's server mode runs on 127.0.0.1 in this process's threads; logscan talks to it through s3fs
and botocore exactly as it would to AWS (``AWS_ENDPOINT_URL``, fake credentials): nothing of the
client is mocked. The same files are analyzed locally and from the bucket, and the results must
agree. gs://, az:// and hf:// are checked for their dispatch and the missing-extra error only.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner

from analyzer.cli import cli
from analyzer.ingest import remote

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "examples" / "runs" / "sample-grpo"
SECRET = "not-a-real-secret-0123456789"
FAST = ["--no-embeddings", "--no-plots", "--no-html"]
BUCKET = "runs"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def _aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, endpoint: str, *, credentials: bool = True) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    # no profile, no shared files, no instance metadata: only what the test gives
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    if credentials:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)


def _client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key=SECRET, region_name="us-east-1"
    )


def _upload(endpoint: str, folder: Path, prefix: str) -> None:
    client = _client(endpoint)
    try:
        client.create_bucket(Bucket=BUCKET)
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            client.upload_file(str(p), BUCKET, f"{prefix}/{p.relative_to(folder).as_posix()}")


def _multi_source_run(folder: Path) -> Path:
    """A Hugging Face output folder: trainer_state.json, the seed's generations.csv, an older
    checkpoint with weights, a file logscan does not read and a hidden one."""
    from detector_scenarios import make_scenario
    from test_ingest_multisource import write_seed_csv, write_trainer_state

    sc = make_scenario("reward_hacking", with_generations=True)
    write_trainer_state(folder / "trainer_state.json", sc.run.steps)
    write_seed_csv(folder / "generations.csv", sc.run.generations)  # type: ignore[arg-type]
    write_trainer_state(folder / "checkpoint-50" / "trainer_state.json", sc.run.steps.head(50))
    (folder / "checkpoint-50" / "model.safetensors").write_bytes(b"\0" * 4096)
    (folder / "notes.txt").write_text("launched by the nightly job\n")
    (folder / ".DS_Store").write_bytes(b"\0\1")
    for name in ("config", "objects/ab/cdef", "objects/12/3456"):
        (folder / ".git" / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / ".git" / name).write_text("not a log")
    return folder


def _comparable(out: Path) -> dict[str, Any]:
    data = json.loads((out / "analysis.json").read_text())
    for key in ("generated_at", "timings", "output_dir"):
        data.pop(key, None)
    data["run"].pop("path")
    data["ingest"].pop("notes")
    for alert in data["alerts"]:
        # reward_std_collapse picks its example groups in no fixed order (two local runs differ too)
        if alert["kind"] == "reward_std_collapse":
            alert["evidence"].pop("sample_ids", None)
    return data


def _analyze(args: list[str]) -> Any:
    return CliRunner().invoke(cli, ["analyze", *args], catch_exceptions=False)


def _one_line_error(result: Any) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output and SECRET not in result.output
    return str(lines[0])


# --- a real S3-compatible server ------------------------------------------------------------------


def test_the_sample_run_read_from_s3_gives_the_local_results(
    s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _aws_env(monkeypatch, tmp_path, s3_endpoint)
    monkeypatch.setattr(remote, "CHUNK", 1 << 16)  # the 1.2 MB completions file crosses 19 chunk boundaries
    _upload(s3_endpoint, SAMPLE, "team/sample-grpo")
    local = tmp_path / "local" / "sample-grpo"
    shutil.copytree(SAMPLE, local)
    here = _analyze([str(local), "-o", str(tmp_path / "local-out"), *FAST])
    monkeypatch.chdir(tmp_path)
    there = _analyze(["s3://runs/team/sample-grpo", *FAST])
    assert there.exit_code == here.exit_code == 1, there.output  # the sample hacks its reward: CRITICAL
    # the default output folder is local, named for the bucket and prefix
    out = tmp_path / "logscan-runs-team-sample-grpo"
    assert (out / "analysis.json").is_file()
    assert _comparable(out) == _comparable(tmp_path / "local-out")
    assert pl.read_parquet(out / "metrics.parquet").equals(pl.read_parquet(tmp_path / "local-out" / "metrics.parquet"))
    assert pl.read_parquet(out / "generations.parquet").equals(pl.read_parquet(tmp_path / "local-out" / "generations.parquet"))
    # the summary names the remote source and the local output; the bucket is not written to
    assert "run:         s3://runs/team/sample-grpo  (" in there.output
    assert "written:     logscan-runs-team-sample-grpo/ (" in there.output
    data = json.loads((out / "analysis.json").read_text())
    assert data["run"]["path"] == "s3://runs/team/sample-grpo"
    assert any(n.startswith("read from s3://runs/team/sample-grpo: 4 file(s) downloaded") for n in data["ingest"]["notes"])
    keys = [o["Key"] for o in _client(s3_endpoint).list_objects_v2(Bucket=BUCKET, Prefix="team/sample-grpo/")["Contents"]]
    assert not [k for k in keys if "logscan" in k.split("/")[-2:-1]]
    assert SECRET not in there.output and SECRET not in (out / "analysis.json").read_text()
    # the staged copy is private
    staged = out / "cache" / "remote"
    assert stat.S_IMODE(staged.stat().st_mode) == 0o700


def test_a_folder_of_several_sources_from_s3_is_one_run_as_locally(
    s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _aws_env(monkeypatch, tmp_path, s3_endpoint)
    local = _multi_source_run(tmp_path / "local" / "grpo-out")
    _upload(s3_endpoint, local, "exp/grpo-out")
    here = _analyze([str(local), "-o", str(tmp_path / "a"), *FAST])
    there = _analyze(["s3://runs/exp/grpo-out", "-o", str(tmp_path / "b"), *FAST])
    assert there.exit_code == here.exit_code, there.output
    a, b = _comparable(tmp_path / "a"), _comparable(tmp_path / "b")
    assert [s["kind"] for s in b["ingest"]["sources"]] == ["hf_trainer_state", "seed_csv"]
    assert b["alerts"] == a["alerts"] and b["metrics"] == a["metrics"] and b["verdict"] == a["verdict"]
    assert b["ingest"]["sources"] == a["ingest"]["sources"]
    assert pl.read_parquet(tmp_path / "b" / "metrics.parquet").equals(pl.read_parquet(tmp_path / "a" / "metrics.parquet"))
    # files that are not training logs are named, as locally, but never downloaded
    not_read = {n["file"]: n["reason"] for n in b["ingest"]["not_read"]}
    assert not_read["checkpoint-50/model.safetensors"].endswith("; not downloaded")
    assert not_read[".DS_Store"] == "hidden file; not downloaded"
    assert not_read[".git/"] == "hidden folder; not downloaded"  # once, not per object
    assert not [f for f in not_read if f.startswith(".git/") and f != ".git/"]
    assert not_read["checkpoint-50/trainer_state.json"].startswith("older checkpoint")  # fetched and judged
    assert "notes.txt" in not_read
    staged = tmp_path / "b" / "cache" / "remote" / "grpo-out"
    assert not (staged / "checkpoint-50" / "model.safetensors").exists()


def test_a_rerun_downloads_only_what_changed_and_forgets_deleted_files(
    s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _aws_env(monkeypatch, tmp_path, s3_endpoint)
    local = _multi_source_run(tmp_path / "local" / "grow")
    _upload(s3_endpoint, local, "exp/grow")
    out = tmp_path / "out"

    def notes() -> list[str]:
        assert _analyze(["s3://runs/exp/grow", "-o", str(out), *FAST]).exit_code in (0, 1)
        return [n for n in json.loads((out / "analysis.json").read_text())["ingest"]["notes"] if n.startswith("read from")]

    size = sum(p.stat().st_size for p in local.rglob("*") if p.is_file() and p.suffix in (".json", ".csv", ".txt"))
    assert notes() == [f"read from s3://runs/exp/grow: 4 file(s) downloaded ({size / 1e6:.1f} MB), 3 not downloaded (not training logs)"]
    assert notes() == ["read from s3://runs/exp/grow: 0 file(s) downloaded (0.0 MB), 4 unchanged since the last run, 3 not downloaded (not training logs)"]
    client = _client(s3_endpoint)
    client.put_object(Bucket=BUCKET, Key="exp/grow/notes.txt", Body=b"relaunched\n")
    client.delete_object(Bucket=BUCKET, Key="exp/grow/generations.csv")
    (got,) = notes()
    assert got.startswith("read from s3://runs/exp/grow: 1 file(s) downloaded") and "3 unchanged" not in got
    data = json.loads((out / "analysis.json").read_text())
    assert [s["kind"] for s in data["ingest"]["sources"]] == ["hf_trainer_state"]  # the deleted CSV is gone
    assert not (out / "cache" / "remote" / "grow" / "generations.csv").exists()


def test_one_file_and_samples_read_from_s3(s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _aws_env(monkeypatch, tmp_path, s3_endpoint)
    _upload(s3_endpoint, SAMPLE, "files/sample-grpo")
    monkeypatch.chdir(tmp_path)
    result = _analyze(["s3://runs/files/sample-grpo/generations.jsonl", *FAST])
    assert result.exit_code in (0, 1), result.output
    assert (tmp_path / "logscan-runs-files-sample-grpo-generations.jsonl" / "analysis.json").is_file()
    shown = CliRunner().invoke(cli, ["samples", "s3://runs/files/sample-grpo", "--question-id", "gsm-sim-069"])
    assert shown.exit_code == 0, shown.output
    assert "gsm-sim-069" in shown.output
    # samples staged into a temporary folder and removed it
    import tempfile

    assert not list(Path(tempfile.gettempdir()).glob("logscan-remote-*/sample-grpo"))


@pytest.mark.slow  # html-report draws every plot (~20 s on 2 loaded cores)
def test_html_report_and_compare_read_from_s3(s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _aws_env(monkeypatch, tmp_path, s3_endpoint)
    _upload(s3_endpoint, SAMPLE, "cmp/sample-grpo")
    _upload(s3_endpoint, REPO / "examples" / "runs" / "healthy-grpo", "cmp/healthy-grpo")
    # a folder marker object, as consoles and some tools create: not a file, not reported
    _client(s3_endpoint).put_object(Bucket=BUCKET, Key="cmp/sample-grpo/", Body=b"")
    monkeypatch.chdir(tmp_path)
    page = CliRunner().invoke(cli, ["html-report", "s3://runs/cmp/sample-grpo", "--no-embeddings"], catch_exceptions=False)
    assert page.exit_code == 0, page.output
    wrote, verdict = page.output.splitlines()
    assert wrote == "Wrote logscan-runs-cmp-sample-grpo/report.html" and verdict.startswith("logscan: CRITICAL — ")
    assert "s3://runs/cmp/sample-grpo" in (tmp_path / "logscan-runs-cmp-sample-grpo" / "report.html").read_text()
    data = json.loads((tmp_path / "logscan-runs-cmp-sample-grpo" / "analysis.json").read_text())
    assert data["ingest"]["not_read"] == [{"file": "README.md", "reason": data["ingest"]["not_read"][0]["reason"]}]
    table = CliRunner().invoke(cli, ["compare", "s3://runs/cmp/sample-grpo", "s3://runs/cmp/healthy-grpo"], catch_exceptions=False)
    assert table.exit_code == 0, table.output
    header = table.output.splitlines()[0]
    assert "sample-grpo" in header and "healthy-grpo" in header and "s3:/" not in header
    verdicts = next(line for line in table.output.splitlines() if line.startswith("verdict"))
    assert verdicts.split()[1:] == ["critical", "healthy"]
    # compare writes nothing: no output folder for the second run
    assert not (tmp_path / "logscan-runs-cmp-healthy-grpo").exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3://no-such-bucket/team/run", "Error: s3://no-such-bucket/team/run: no such bucket (no-such-bucket)"),
        ("s3://no-such-bucket", "Error: s3://no-such-bucket: no such bucket (no-such-bucket)"),
        ("s3://runs/team/no-such-run", "Error: s3://runs/team/no-such-run: no such file or folder in the bucket runs"),
    ],
)
def test_a_missing_bucket_or_prefix_is_one_line_and_exit_2(
    s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, message: str
) -> None:
    _aws_env(monkeypatch, tmp_path, s3_endpoint)
    _upload(s3_endpoint, SAMPLE, "team/sample-grpo")
    monkeypatch.chdir(tmp_path)
    assert _one_line_error(_analyze([url, *FAST])) == message
    assert not list(tmp_path.glob("logscan-*/analysis.json"))


def test_no_credentials_is_one_line_and_exit_2(s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _aws_env(monkeypatch, tmp_path, s3_endpoint, credentials=False)
    line = _one_line_error(_analyze(["s3://runs/team/sample-grpo", "-o", str(tmp_path / "o"), *FAST]))
    assert line.startswith("Error: s3://runs/team/sample-grpo: no credentials found; set AWS_ACCESS_KEY_ID")


def test_access_denied_is_one_line_and_exit_2(s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server checks credentials (moto's auth switched on): keys it does not know are refused."""
    import urllib.request

    _aws_env(monkeypatch, tmp_path, s3_endpoint)
    _upload(s3_endpoint, SAMPLE, "team/sample-grpo")

    def auth_after(count: str) -> None:
        req = urllib.request.Request(
            f"{s3_endpoint}/moto-api/reset-auth", data=count.encode(), method="POST", headers={"Content-Type": "text/plain"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200

    auth_after("0")
    try:
        line = _one_line_error(_analyze(["s3://runs/team/sample-grpo", "-o", str(tmp_path / "o"), *FAST]))
    finally:
        auth_after("inf")
    assert line == "Error: s3://runs/team/sample-grpo: access denied; check the credentials and their permissions"


def test_credentials_in_the_url_are_never_printed(s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _aws_env(monkeypatch, tmp_path, s3_endpoint)
    line = _one_line_error(_analyze([f"s3://testing:{SECRET}@no-such-bucket/run?token={SECRET}", *FAST]))
    assert line.startswith("Error: s3://no-such-bucket/run: credentials in the URL are not used; give them in the environment")


def test_a_store_that_never_answers_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that accepts connections and never replies: the read timeout ends it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        _aws_env(monkeypatch, tmp_path, f"http://127.0.0.1:{server.getsockname()[1]}")
        monkeypatch.setenv("LOGSCAN_REMOTE_TIMEOUT", "1")
        t0 = time.monotonic()
        line = _one_line_error(_analyze(["s3://runs/team/run", "-o", str(tmp_path / "o"), *FAST]))
        assert time.monotonic() - t0 < 30
        assert line == (
            "Error: s3://runs/team/run: the storage did not answer within 1 s "
            "(network or endpoint unreachable; LOGSCAN_REMOTE_TIMEOUT sets the timeout)"
        )
    finally:
        server.close()
        for c in held:
            c.close()


def test_a_bad_timeout_setting_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _aws_env(monkeypatch, tmp_path, f"http://127.0.0.1:{_free_port()}")
    monkeypatch.setenv("LOGSCAN_REMOTE_TIMEOUT", "soon")
    line = _one_line_error(_analyze(["s3://runs/team/run", "-o", str(tmp_path / "o"), *FAST]))
    assert line == "Error: LOGSCAN_REMOTE_TIMEOUT='soon' is not a number of seconds"


def test_a_staging_folder_that_cannot_be_written_is_an_output_error(
    s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _aws_env(monkeypatch, tmp_path, s3_endpoint)
    _upload(s3_endpoint, SAMPLE, "team/sample-grpo")
    (tmp_path / "blocker").write_text("a file where the output folder should be")
    line = _one_line_error(_analyze(["s3://runs/team/sample-grpo", "-o", str(tmp_path / "blocker" / "out"), *FAST]))
    assert line.startswith(f"Error: cannot write {tmp_path / 'blocker' / 'out'}")
    assert line.endswith("write elsewhere with -o")


def test_nothing_listening_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _aws_env(monkeypatch, tmp_path, f"http://127.0.0.1:{_free_port()}")
    line = _one_line_error(_analyze(["s3://runs/team/run", "-o", str(tmp_path / "o"), *FAST]))
    assert line == "Error: s3://runs/team/run: cannot connect to the storage endpoint (check the network and AWS_ENDPOINT_URL)"


# --- dispatch, the extras, what is refused ----------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "blocked", "extra"),
    [
        ("s3://bucket/runs/001", "s3fs", "s3"),
        ("gs://bucket/runs/001", "gcsfs", "gcs"),
        ("gcs://bucket/runs/001", "gcsfs", "gcs"),
        ("az://container/runs/001", "adlfs", "azure"),
        ("abfs://container/runs/001", "adlfs", "azure"),
        ("hf://datasets/org/repo/runs/001", "huggingface_hub", "hf"),
    ],
)
def test_a_missing_extra_names_the_one_to_install(url: str, blocked: str, extra: str, tmp_path: Path) -> None:
    """The CLI in a subprocess in which the scheme's library cannot be imported."""
    code = (
        f"import sys; sys.modules[{blocked!r}] = None; sys.argv = ['logscan', 'analyze', {url!r}, '--no-embeddings']\n"
        "from analyzer.cli import main; main()"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    scheme = url.split("://")[0]
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == f'Error: {url}: reading {scheme}:// needs the {extra} extra: pip install "logscan-rl[{extra}]"\n'
    assert not list(tmp_path.iterdir())  # nothing written


def test_urls_dispatch_to_their_filesystem() -> None:
    fs, path = remote.filesystem("hf://datasets/org/repo/runs/001")
    assert type(fs).__name__ == "HfFileSystem" and path == "datasets/org/repo/runs/001"
    fs, path = remote.filesystem("s3://bucket/runs/001/")
    assert type(fs).__name__ == "S3FileSystem" and path.rstrip("/") == "bucket/runs/001"
    assert fs.retries == remote.S3_RETRIES


def test_an_unsupported_scheme_is_refused(tmp_path: Path) -> None:
    line = _one_line_error(_analyze(["ftp://host/runs/001", "-o", str(tmp_path / "o")]))
    assert line == "Error: ftp://host/runs/001: logscan reads runs in object storage (s3://, gs://, az://, hf://) or local paths, not ftp://"


def test_watch_refuses_a_url() -> None:
    result = CliRunner().invoke(cli, ["watch", "s3://user:pw@bucket/runs/001", "--once"])
    line = _one_line_error(result)
    assert line.startswith("Error: s3://bucket/runs/001: watch follows a local run") and "pw" not in line


@pytest.mark.parametrize(
    ("url", "shown", "out"),
    [
        ("s3://bucket/team/run-7/", "s3://bucket/team/run-7", "logscan-bucket-team-run-7"),
        ("S3://key:secret@bucket/run?versionId=3", "s3://bucket/run", "logscan-bucket-run"),
        ("hf://datasets/org/repo/runs/a b", "hf://datasets/org/repo/runs/a b", "logscan-datasets-org-repo-runs-a_b"),
        ("az://container/run#frag", "az://container/run", "logscan-container-run"),
        ("abfss://box@acct.dfs.core.windows.net/run", "abfss://box@acct.dfs.core.windows.net/run", "logscan-box_acct.dfs.core.windows.net-run"),
    ],
)
def test_display_url_and_default_output_folder(url: str, shown: str, out: str) -> None:
    assert remote.display_url(url) == shown
    assert remote.default_output_dir(url) == Path(out)


def test_a_long_prefix_keeps_the_runs_name_and_stays_distinct() -> None:
    a = remote.default_output_dir("s3://bucket/" + "deep/" * 30 + "run-1")
    b = remote.default_output_dir("s3://bucket/" + "other/" * 30 + "run-1")
    assert a != b and a.name.startswith("logscan-") and "run-1" in a.name and len(a.name) <= 80


def test_remote_errors_never_carry_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    err = remote.remote_error(RuntimeError(f"signature for {SECRET} did not match"), "s3://b/r")
    assert SECRET not in str(err) and "***" in str(err)
    denied = remote.remote_error(PermissionError("Access Denied"), "s3://b/r")
    assert str(denied) == "s3://b/r: access denied; check the credentials and their permissions"


def test_each_scheme_names_an_extra_that_installs_its_library() -> None:
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for scheme, extra in remote.SCHEMES.items():
        assert any(r.startswith(remote.EXTRA_PACKAGES[extra]) for r in extras[extra]), (scheme, extra)
        assert remote.INSTALL_HINTS[extra] == f'pip install "logscan-rl[{extra}]"'
    assert "s3" in extras["test"][0]  # the S3 path is tested in CI
