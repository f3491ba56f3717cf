"""Not Python's business: the clone's data folder. Python imports this file only when a command runs from the
folder that holds a clone named ``minivb``: ``minivb`` is then that folder, not the installed package (the clone's
``minivb/`` inside it), and ``minivb.data`` is this folder. Say so in one line instead of an ImportError."""

import sys
from pathlib import Path

clone = Path(__file__).absolute().parent.parent
print(
    f"error: the folder {clone.name}/ here (your minivb clone) hides the installed minivb package; run the command "
    f"from inside it (cd {clone.name}) or from any other folder",
    file=sys.stderr,
)
raise SystemExit(2)
