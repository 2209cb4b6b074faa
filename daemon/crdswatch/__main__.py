"""`python -m crdswatch` runs the command line."""

from crdswatch.entry import main

main()
