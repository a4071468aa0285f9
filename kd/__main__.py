"""`python -m kd` (also what `torchrun -m kd` runs)."""

from kd.entry import main

main()
