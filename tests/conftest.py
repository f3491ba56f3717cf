import sys
from pathlib import Path

import pytest

# tests/videos.py (test-video makers) and tests/httpserver.py (a loopback HTTP server) are plain modules.
sys.path.insert(0, str(Path(__file__).parent))

from httpserver import Server  # noqa: E402


@pytest.fixture
def server(tmp_path):
    """A loopback HTTP server over ``tmp_path/www`` (see tests/httpserver.py)."""
    root = tmp_path / "www"
    root.mkdir()
    srv = Server(root)
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()
    srv.thread.join(timeout=5)
