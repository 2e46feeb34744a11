"""`python -m vsr ...`: the same command as `vsr ...`, for an environment whose scripts are not on the PATH."""

from vsr.cli import main

main()
