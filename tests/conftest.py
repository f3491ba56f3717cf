import sys
from pathlib import Path

# tests/videos.py (test-video makers) is imported as a plain module.
sys.path.insert(0, str(Path(__file__).parent))
