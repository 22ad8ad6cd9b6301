"""`python -m posejax.export`: Exports a workdir's model to ONNX or a TensorFlow SavedModel (`posejax.tools.export`)."""

import sys

from posejax.tools.export import main

if __name__ == "__main__":
  sys.exit(main())
