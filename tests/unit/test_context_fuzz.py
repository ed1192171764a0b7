"""Whatever a user feeds ``ivfarm context``, the answer is a result or a one-line error."""
from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contextualization.packer import unpack
from ivfarm.cli.context import context

REPO = Path(__file__).resolve().parents[2]
HANDLERS = [REPO / "contextualization" / "handlers" / name for name in ("localfs.py", "cvmfs.py")]
YAMLISH = st.text(alphabet=st.sampled_from(list("abc:-_ \n\t[]{},#&*!|>'\"%@?~0123456789.")),
                  max_size=200)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                    st.text(max_size=20))
TREES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12)
SECTION_NAMES = st.one_of(st.sampled_from(["localfs", "cvmfs"]), st.text(max_size=12))


def _check(text: str) -> None:
    """Pack ``text`` as a config: success, or exit code 1 with one line on stderr."""
    with tempfile.TemporaryDirectory() as tmp:
        config, out = Path(tmp) / "config.yaml", Path(tmp) / "out.mime"
        config.write_text(text, encoding="utf-8", errors="surrogateescape")
        result = CliRunner().invoke(context, ["pack", str(config), "--handler", str(HANDLERS[0]),
                                              "--handler", str(HANDLERS[1]), "-o", str(out)])
        assert result.exception is None or isinstance(result.exception, SystemExit), \
            repr(result.exception)
        if result.exit_code == 0:
            assert unpack(out.read_bytes())
        else:
            assert result.exit_code == 1
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=YAMLISH, header=st.sampled_from(["#multiple-config\n", "", "#multiple-config", "#x\n"]))
def test_yamlish_text_never_breaks_the_cli(body: str, header: str) -> None:
    _check(header + body)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sections=st.dictionaries(SECTION_NAMES, TREES, max_size=3))
def test_random_section_structures_never_break_the_cli(sections: dict) -> None:
    _check("#multiple-config\n" + yaml.safe_dump(sections, allow_unicode=True))


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=300), gzip_magic=st.booleans())
def test_unpack_of_random_bytes_never_breaks_the_cli(data: bytes, gzip_magic: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "user-data"
        path.write_bytes((b"\x1f\x8b" if gzip_magic else b"MIME-Version: 1.0\n") + data)
        result = CliRunner().invoke(context, ["unpack", str(path)])
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert result.exit_code in (0, 1)
        if result.exit_code == 1:
            assert len(result.stderr.strip().splitlines()) == 1
