"""Fixtures of the EC2 end-to-end tests."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.ec2_support import Ec2Site, start_site


@pytest.fixture(scope="module")
def ec2_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ec2Site]:
    """A running site for the tests of one module; removed afterwards."""
    built = start_site(tmp_path_factory.mktemp("ec2site"))
    yield built
    built.site.close()
