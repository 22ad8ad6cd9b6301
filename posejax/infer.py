"""`python -m posejax.infer`: Lifts custom 2D keypoints or a video to 3D with a trained workdir (`posejax.tools.infer`)."""

from posejax.tools.infer import run_cli

if __name__ == "__main__":
  run_cli()
