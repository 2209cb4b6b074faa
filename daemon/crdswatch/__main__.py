"""`python -m crdswatch` runs the command line."""

from crdswatch.cli import main

main()
