"""`python -m posejax.interop`: Imports a VideoPose3D checkpoint into a posejax workdir (`posejax.tools.interop`)."""

import sys

from posejax.tools.interop import main

if __name__ == "__main__":
  sys.exit(main())
