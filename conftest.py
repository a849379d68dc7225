"""Settings shared by the unit tests and the notebooks run under nbval.

Notebook kernels inherit this process's environment: `TELEMETRY_LAB_FAST=1` tells the
notebooks to shorten their long demos (a 10-second gateway run becomes 2 seconds), so the
whole workshop runs quickly in CI. Set it to 0 to run them at full length.
"""

import os

os.environ.setdefault("TELEMETRY_LAB_FAST", "1")
