"""`python -m kd` (also what `torchrun -m kd` runs)."""

from kd.cli import main

main()
