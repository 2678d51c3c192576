from __future__ import annotations

import pytest

from tests.support.outlook import OutlookWorld


@pytest.fixture
def world(tmp_path):
    """Fake identity platform + fake Graph, with the rep's mailbox already connected."""
    w = OutlookWorld(tmp_path)
    w.connect()
    yield w
    w.close()
