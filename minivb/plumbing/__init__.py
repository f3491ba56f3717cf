"""Plain helpers the rest of minivb stands on: argument checks, atomic files, devices, DDP, run folders, the command
line. None of it is the lesson; docs/layers.md has the map."""
