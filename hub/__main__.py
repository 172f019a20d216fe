"""`python -m hub` runs the same CLI as the `hub` script."""

from hub.cli import main

main()
