"""`python -m posejax.infer`: lifts custom 2D keypoints or a video to 3D with a trained workdir.

The tool lives in `posejax.tools.infer`; its docstring is this entry point's --help.
"""

from posejax.tools import infer as _infer

__doc__ = _infer.__doc__  # absl prints the main module's docstring as the usage

if __name__ == "__main__":
  _infer.run_cli()
