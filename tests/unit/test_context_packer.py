"""``ivfarm context pack`` / ``unpack``: the INFN #multiple-config format to MIME user-data."""
from __future__ import annotations

import ast
import gzip
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from contextualization.errors import ContextError
from contextualization.mime import MAX_USER_DATA
from contextualization.packer import PartSpec, pack, parse_part_spec, unpack
from ivfarm.cli.context import context

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "contextualization" / "examples" / "infn-worker.yaml"
HANDLERS = [REPO / "contextualization" / "handlers" / name for name in ("localfs.py", "cvmfs.py")]
SYSTEM_PYTHON = "/usr/bin/python3"

SMALL_HANDLER = '''\
def list_types():
    return ["text/site-config"]


def handle_part(data, ctype, filename, payload):
    pass
'''


def _example_sections() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


@pytest.fixture
def small(tmp_path: Path) -> tuple[Path, Path]:
    """A one-section config and the small handler that claims it."""
    config = tmp_path / "site.yaml"
    config.write_text("#multiple-config\nsite:\n  motd: welcome to the farm\n")
    handler = tmp_path / "site_handler.py"
    handler.write_text(SMALL_HANDLER)
    return config, handler


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- the INFN example ---------------------------------------------------------------------------

def test_example_packs_handlers_first_then_one_part_per_section() -> None:
    parts = unpack(pack(EXAMPLE, HANDLERS).data)
    assert [(p.content_type, p.filename) for p in parts] == [
        ("text/part-handler", "localfs.py"),
        ("text/part-handler", "cvmfs.py"),
        ("text/localfs-config", "localfs-config.ccfg"),
        ("text/cvmfs-config", "cvmfs-config.ccfg"),
    ]


def test_section_parts_hold_the_section_under_its_own_key() -> None:
    sections = _example_sections()
    for part in unpack(pack(EXAMPLE, HANDLERS).data)[2:]:
        name = part.content_type.removeprefix("text/").removesuffix("-config")
        assert yaml.safe_load(part.payload) == {name: sections[name]}
        assert part.payload.decode().startswith(f"{name}:\n")


def test_embedded_handlers_are_self_contained_python() -> None:
    for part in unpack(pack(EXAMPLE, HANDLERS).data)[:2]:
        tree = ast.parse(part.payload, feature_version=(3, 6))  # old guests' python3 too
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not any(name and name.split(".")[0] in ("contextualization", "ivfarm")
                       for name in imported)
        assert b"#include" not in part.payload


@pytest.mark.skipif(not os.path.exists(SYSTEM_PYTHON), reason="no system python3")
def test_embedded_handlers_load_in_a_foreign_python(tmp_path: Path) -> None:
    """The guest's python has no ivfarm: each shipped handler must still load and list its type."""
    for part in unpack(pack(EXAMPLE, HANDLERS).data)[:2]:
        (tmp_path / part.filename).write_bytes(part.payload)
        script = ("import importlib.util as u; s = u.spec_from_file_location('h', %r); "
                  "m = u.module_from_spec(s); s.loader.exec_module(m); print(m.list_types()[0])"
                  % part.filename)
        run = subprocess.run([SYSTEM_PYTHON, "-I", "-c", script], cwd=tmp_path,
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == "text/" + part.filename.removesuffix(".py") + "-config"


def test_packing_is_reproducible_and_the_boundary_can_be_chosen() -> None:
    first, second = pack(EXAMPLE, HANDLERS), pack(EXAMPLE, HANDLERS)
    assert first.data == second.data
    chosen = pack(EXAMPLE, HANDLERS, boundary="ivfarm-test-boundary")
    assert chosen.data != first.data
    assert b"ivfarm-test-boundary" in gzip.decompress(chosen.data)
    assert unpack(chosen.data) == unpack(first.data)


# -- size policy --------------------------------------------------------------------------------

def test_small_archive_stays_plain(small) -> None:
    config, handler = small
    packed = pack(config, [handler])
    assert not packed.gzipped
    assert packed.data.startswith(b"Content-Type: multipart/mixed")
    assert len(packed.data) == packed.plain_size <= MAX_USER_DATA


def test_archive_over_16k_is_gzipped_when_that_fits() -> None:
    packed = pack(EXAMPLE, HANDLERS)
    assert packed.plain_size > MAX_USER_DATA
    assert packed.gzipped and packed.data[:2] == b"\x1f\x8b"
    assert len(packed.data) <= MAX_USER_DATA
    assert len(gzip.decompress(packed.data)) == packed.plain_size


def test_archive_too_big_even_gzipped_is_refused_with_sizes(small, tmp_path: Path) -> None:
    config, handler = small
    noise = tmp_path / "noise.bin"
    noise.write_bytes(os.urandom(20000))
    with pytest.raises(ContextError) as error:
        pack(config, [handler], [PartSpec(noise, "application/octet-stream")])
    message = str(error.value)
    assert "16384" in message and "gzipped" in message
    assert any(word.isdigit() and int(word) > 20000 for word in message.split())


# -- configuration errors -----------------------------------------------------------------------

def test_yaml_error_names_file_and_line(small, tmp_path: Path) -> None:
    _, handler = small
    bad = _write(tmp_path, "bad.yaml", "#multiple-config\nsite:\n  motd: ok\n   oops: [\n")
    with pytest.raises(ContextError, match=r"bad\.yaml:4:\d+: YAML error"):
        pack(bad, [handler])


def test_missing_header_is_refused(small, tmp_path: Path) -> None:
    _, handler = small
    bad = _write(tmp_path, "plain.yaml", "site:\n  motd: hi\n")
    with pytest.raises(ContextError, match="first line must be '#multiple-config'"):
        pack(bad, [handler])


@pytest.mark.parametrize("body, found", [("site: 17\n", "int"), ("site:\n", "nothing"),
                                         ("site: [a, b]\n", "list")])
def test_sections_must_be_mappings(small, tmp_path: Path, body: str, found: str) -> None:
    _, handler = small
    bad = _write(tmp_path, "bad.yaml", "#multiple-config\n# comment\n" + body)
    with pytest.raises(ContextError, match=f"bad.yaml:3: section 'site' must be a mapping.*{found}"):
        pack(bad, [handler])


def test_absurdly_deep_yaml_is_refused_not_crashed(small, tmp_path: Path) -> None:
    _, handler = small
    bad = _write(tmp_path, "deep.yaml", "#multiple-config\nsite: " + "[" * 1500 + "]" * 1500)
    with pytest.raises(ContextError, match="nested too deeply"):
        pack(bad, [handler])


def test_duplicate_sections_are_refused(small, tmp_path: Path) -> None:
    _, handler = small
    bad = _write(tmp_path, "dup.yaml", "#multiple-config\nsite: {a: 1}\nsite: {b: 2}\n")
    with pytest.raises(ContextError, match="dup.yaml:3.*duplicate key 'site'"):
        pack(bad, [handler])


def test_unclaimed_sections_are_named() -> None:
    with pytest.raises(ContextError, match="no handler claims section 'cvmfs'"):
        pack(EXAMPLE, HANDLERS[:1])


def test_two_handlers_claiming_one_type_are_refused(tmp_path: Path) -> None:
    copy = tmp_path / "localfs_copy.py"
    shutil.copy(HANDLERS[0], copy)
    with pytest.raises(ContextError, match="both claim text/localfs-config"):
        pack(EXAMPLE, HANDLERS + [copy])


@pytest.mark.parametrize("source, complaint", [
    ("x = 1\n", "not a cloud-init part-handler"),
    ("def list_types(:\n", r":1: not valid Python"),
    ("raise RuntimeError('boom')\n", "fails to load: RuntimeError: boom"),
    ("import sys\nsys.exit(3)\n", "fails to load: SystemExit"),
    ("def list_types():\n    return 'text/site-config'\n\ndef handle_part(*a):\n    pass\n",
     "must return lower-case content types"),
    ("from .runtime import PartHandler  # ivfarm: inline\n", "only absolute imports"),
    ("from no_such_pkg.runtime import x  # ivfarm: inline\n", "cannot inline no_such_pkg"),
])
def test_broken_handlers_are_refused_clearly(small, tmp_path: Path, source: str,
                                             complaint: str) -> None:
    config, _ = small
    handler = _write(tmp_path, "broken.py", source)
    with pytest.raises(ContextError, match=complaint):
        pack(config, [handler])


def test_unreadable_files_are_reported(small, tmp_path: Path) -> None:
    config, handler = small
    with pytest.raises(ContextError, match="cannot read config .*missing.yaml"):
        pack(tmp_path / "missing.yaml", [handler])
    with pytest.raises(ContextError, match="cannot read handler .*nope.py"):
        pack(config, [tmp_path / "nope.py"])


# -- extra parts --------------------------------------------------------------------------------

def test_extra_parts_take_their_type_from_the_first_line_or_the_spec(small, tmp_path) -> None:
    config, handler = small
    cc = _write(tmp_path, "extra.cfg", "#cloud-config\nruncmd: [[touch, /marker]]\n")
    sh = _write(tmp_path, "setup.sh", "#!/bin/sh\necho ready\n")
    boothook = _write(tmp_path, "hook.txt", "echo early\n")
    packed = pack(config, [handler], [parse_part_spec(str(cc)), parse_part_spec(str(sh)),
                                      parse_part_spec(f"{boothook}:text/cloud-boothook")])
    extras = {part.filename: part for part in unpack(packed.data)[2:]}
    assert extras["extra.cfg"].content_type == "text/cloud-config"
    assert extras["setup.sh"].content_type == "text/x-shellscript"
    assert extras["hook.txt"].content_type == "text/cloud-boothook"
    assert extras["setup.sh"].payload == sh.read_bytes()


def test_part_spec_only_splits_off_something_that_looks_like_a_type() -> None:
    assert parse_part_spec("a:b/c.sh") == PartSpec(Path("a:b/c.sh"))
    assert parse_part_spec("dir:x/run.sh:text/x-shellscript") == PartSpec(
        Path("dir:x/run.sh"), "text/x-shellscript")


@pytest.mark.parametrize("text, spec_type, complaint", [
    ("just some words\n", None, "cannot tell the type"),
    ("#include\nhttp://example.org/x\n", None, "self-contained"),
    ("anything\n", "text/x-include-url", "self-contained"),
    ("def list_types(): pass\n", "text/part-handler", "use --handler|with --handler"),
])
def test_extra_parts_that_cannot_go_in_are_refused(small, tmp_path, text, spec_type,
                                                   complaint) -> None:
    config, handler = small
    extra = _write(tmp_path, "extra.txt", text)
    with pytest.raises(ContextError, match=complaint):
        pack(config, [handler], [PartSpec(extra, spec_type)])


# -- unpack -------------------------------------------------------------------------------------

def test_unpack_reads_plain_and_gzip_alike(small) -> None:
    config, handler = small
    packed = pack(config, [handler])
    assert unpack(packed.data) == unpack(gzip.compress(packed.data))


@pytest.mark.parametrize("data, complaint", [(b"#cloud-config\n{}\n", "not a MIME"),
                                             (b"\x1f\x8b\x08garbage", "corrupt gzip")])
def test_unpack_refuses_what_is_not_an_archive(data: bytes, complaint: str) -> None:
    with pytest.raises(ContextError, match=complaint):
        unpack(data)


# -- the CLI group ------------------------------------------------------------------------------
# The group is tested here through click's CliRunner; the `ivfarm` console script that mounts it
# belongs to the main CLI (ivfarm.cli.main).

def _invoke(*args: str):
    return CliRunner().invoke(context, [str(arg) for arg in args])


def _pack_example(out: Path):
    return _invoke("pack", EXAMPLE, "--handler", HANDLERS[0], "--handler", HANDLERS[1], "-o", out)


def test_cli_pack_then_unpack_table(tmp_path: Path) -> None:
    out = tmp_path / "user-data.mime"
    result = _pack_example(out)
    assert result.exit_code == 0, result.output
    assert f"wrote {out}: 4 parts, {out.stat().st_size} bytes" in result.stdout
    listing = _invoke("unpack", out)
    assert listing.exit_code == 0
    for part in unpack(out.read_bytes()):
        row = next(line for line in listing.stdout.splitlines() if part.filename in line)
        assert part.content_type in row and str(len(part.payload)) in row


def test_cli_unpack_json_and_extract(tmp_path: Path) -> None:
    out = tmp_path / "user-data.mime"
    _pack_example(out)
    result = _invoke("unpack", out, "--output", "json", "--extract", tmp_path / "parts")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert [row["index"] for row in rows] == list(range(len(rows)))
    for row, part in zip(rows, unpack(out.read_bytes()), strict=True):
        assert (row["content_type"], row["filename"], row["size"]) == (
            part.content_type, part.filename, len(part.payload))
        assert (tmp_path / "parts" / part.filename).read_bytes() == part.payload


def test_cli_pack_to_stdout(small) -> None:
    config, handler = small
    result = _invoke("pack", config, "--handler", handler, "-o", "-")
    assert result.exit_code == 0
    assert unpack(result.stdout_bytes)[1].filename == "site-config.ccfg"
    assert "wrote -" in result.stderr


@pytest.mark.parametrize("args, complaint", [
    (("pack", EXAMPLE, "--handler", HANDLERS[0], "-o", "OUT"), "no handler claims section 'cvmfs'"),
    (("pack", "/nonexistent/x.yaml", "-o", "OUT"), "cannot read config"),
    (("unpack", EXAMPLE), "not a MIME multipart"),
    (("pack", EXAMPLE, "--handler", HANDLERS[0], "--handler", HANDLERS[1], "--boundary",
      "bad\"boundary", "-o", "OUT"), "invalid MIME boundary"),
])
def test_cli_errors_are_one_line_without_traceback(tmp_path: Path, args, complaint: str) -> None:
    result = _invoke(*(tmp_path / "out" if arg == "OUT" else arg for arg in args))
    assert result.exit_code == 1
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and complaint in lines[0]


def test_cli_reports_an_unwritable_output(small, tmp_path: Path) -> None:
    config, handler = small
    result = _invoke("pack", config, "--handler", handler, "-o", tmp_path / "no" / "dir" / "x")
    assert result.exit_code == 1
    assert "No such file or directory" in result.stderr
