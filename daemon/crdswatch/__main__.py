"""`python -m crdswatch` runs the command line."""

from crdswatch.cli.entry import main

main()
