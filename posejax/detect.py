"""`python -m posejax.detect`: Detects COCO 2D keypoints in videos (`posejax.tools.detect`)."""

import sys

from posejax.tools.detect import main

if __name__ == "__main__":
  sys.exit(main())
